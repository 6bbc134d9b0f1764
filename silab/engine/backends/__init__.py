"""The model runtimes, one module each: `model.backend = "NAME"` is `silab/engine/backends/NAME.py`.

A backend module exposes `Backend` (a class with the contract of silab.engine.backend.Backend,
built as `Backend(profile, model_path)`) and may expose `check(profile)`: what this machine must
have for it (a package, a device), raised as UsageError before a run folder is written. Adding a
backend is adding a module here; the profile accepts its name because `names()` lists it. Listing
imports nothing, so the config can ask at every profile construction (no torch, no vllm).
"""
from __future__ import annotations

import importlib
import pkgutil


def names() -> list[str]:
    """The backends a profile may name: this package's public modules, found without importing them."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.ispkg and not m.name.startswith("_"))


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def check(profile) -> None:
    """Refuse (UsageError) a backend this machine cannot run, before anything is written."""
    fn = getattr(_module(profile.model.backend), "check", None)
    if fn is not None:
        fn(profile)


def make_backend(profile, model_path: str):
    """The profile's backend on the model at model_path (a validated profile names a listed module)."""
    return _module(profile.model.backend).Backend(profile, model_path)
