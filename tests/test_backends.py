"""The backends registry: a module in silab/engine/backends is a backend a profile may name.

The throwaway `echo` backend below is what adding a backend takes: one module exposing `Backend`
(and, if the machine may lack something, `check(profile)`); names(), the profile's validation and
make_backend find it with no other edit.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

import silab.engine.backends as backends
from silab.config import apply_overrides, load_profile
from silab.errors import UsageError

ECHO = '''
from silab.errors import UsageError


def check(profile):
    if profile.model.max_new_tokens > 64:
        raise UsageError("model.backend = \\"echo\\" answers at most 64 tokens")


class EchoBackend:
    def __init__(self, profile, model_path):
        self.profile, self.model_path = profile, model_path


Backend = EchoBackend
'''


@pytest.fixture
def echo(tmp_path, monkeypatch):
    """A package folder holding echo.py, added to silab.engine.backends' search path for this test."""
    (tmp_path / "echo.py").write_text(ECHO)
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(tmp_path)])
    yield
    sys.modules.pop("silab.engine.backends.echo", None)


def test_the_shipped_backends_are_listed():
    assert {"hf", "vllm"} <= set(backends.names())
    assert all(not name.startswith("_") for name in backends.names())


def test_listing_imports_no_runtime():
    """The config asks for names() at every profile construction: it must stay light."""
    code = ("import sys; from silab.engine.backends import names; names(); "
            "heavy = [m for m in ('torch', 'transformers', 'vllm', 'peft') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_new_backend_is_one_module(echo, micro):
    path, overrides = micro
    assert "echo" in backends.names()
    profile = apply_overrides(load_profile(path, overrides), ["model.backend=echo"])
    backends.check(profile)
    made = backends.make_backend(profile, "/models/m")
    assert type(made).__name__ == "EchoBackend" and made.model_path == "/models/m" and made.profile is profile
    with pytest.raises(UsageError, match="at most 64 tokens"):
        backends.check(apply_overrides(profile, ["model.max_new_tokens=65"]))


def test_an_unknown_backend_is_refused_with_the_known_names(micro):
    path, overrides = micro
    with pytest.raises(UsageError) as refused:
        load_profile(path, overrides + ["model.backend=echo"])
    assert "model.backend" in str(refused.value) and "hf" in str(refused.value) and "vllm" in str(refused.value)
