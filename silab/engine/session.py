"""Starting and resuming runs: the steps shared by `silab run` and the interactive engine.

Everything that can be bad input (profile, model path, data files, run folder) is checked before
the first file is written, so a refused command leaves nothing behind.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Callable

from silab.config import Profile, profile_from_dict, tomllib
from silab.engine import backends
from silab.engine.loop import Control, RoundLoop, manifest, profile_toml
from silab.errors import UsageError
from silab.runs.store import RunDir, default_run_dir


def check_runtime(profile: Profile) -> None:
    """A path-like model that does not exist is bad input; anything else may be a hub id. So is a
    backend or device this machine lacks: refused before the run folder is written."""
    path = profile.model.path
    if path != "organism" and path.startswith(("/", ".", "~")) and not Path(path).expanduser().is_dir():
        raise UsageError(f"model.path: no model folder at {path}")
    backends.check(profile)  # e.g. vLLM installed, a dtype it serves here
    if profile.model.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise UsageError(f"model.device = \"{profile.model.device}\" but this machine has no CUDA GPU "
                             f"(--set model.device=cpu)")


def new_run(profile: Profile, run_dir: str | None, emit: Callable[[dict], None],
            control: Control | None = None) -> RoundLoop:
    check_runtime(profile)
    path = Path(run_dir) if run_dir else default_run_dir(profile.run_root, profile.name)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path}: run folder exists and is not empty (use --resume {path} to continue it)")
    loop = RoundLoop(profile, None, emit, control)
    loop.prepare_data()
    loop.run = RunDir.create(path, profile_toml(profile), manifest(profile, sys.argv))
    return loop


def load_run_profile(path: Path) -> Profile:
    where = str(Path(path) / "profile.toml")
    try:
        data = tomllib.loads((Path(path) / "profile.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{where}: cannot read the run's profile: {e}") from None
    return profile_from_dict(data, where)


def resume_run(run_dir: str | Path, emit: Callable[[dict], None], control: Control | None = None) -> RoundLoop:
    run = RunDir.open(Path(run_dir))
    profile = load_run_profile(run.path)
    check_runtime(profile)
    loop = RoundLoop(profile, run, emit, control)
    loop.prepare_data()
    run.discard_partial()
    return loop


def start(loop: RoundLoop, resumed: bool) -> int:
    """Start the backend and restore the last completed round; returns the next round to run."""
    done = loop.run.completed()
    loop.emit("run_started", run_dir=str(loop.run.path), profile=loop.p.name, rounds=loop.p.rounds,
              resumed_from=done[-1] if (resumed and done) else None)
    loop.setup()
    loop.restore(done[-1] if done else None)
    return done[-1] + 1 if done else 0


def run_rounds(loop: RoundLoop, resumed: bool) -> list[dict]:
    """Start (or resume) and run rounds up to the profile's last. A failure is recorded as an
    `error` event with its traceback, then raised; completed rounds stay on disk."""
    try:
        first = start(loop, resumed)
        records = [loop.run_round(t) for t in range(first, loop.p.rounds + 1)]
    except UsageError:
        raise
    except Exception as exc:
        loop.emit("error", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        raise
    loop.emit("run_finished", rounds_completed=len(loop.run.completed()))
    return records
