"""Shared fixtures: a micro organism built once per test session (a few seconds on a CPU)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MICRO_PROFILE = ROOT / "tests" / "micro.toml"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def organism_cache(tmp_path_factory) -> Path:
    """A cache folder holding the micro organism, built once for the whole session."""
    from silab.engine.organism import ensure_organism

    cache = tmp_path_factory.mktemp("organisms")
    ensure_organism("micro", cache)
    return cache


@pytest.fixture
def micro(organism_cache) -> tuple[str, list[str]]:
    """(profile path, overrides) for a run on the micro organism: pass both to silab."""
    return str(MICRO_PROFILE), [f"model.cache_dir={organism_cache}"]


# One math thread per process, here and in every engine subprocess a test starts: the suite runs
# several processes at once on few cores, and torch's spinning thread pools then slow tiny models
# twenty-fold (a micro round: 0.4 s with one thread, 10 s with two on a busy 2-core machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _quiet_libraries():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
