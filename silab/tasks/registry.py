"""The task registry: a name -> the module and class that implement it. Modules are named by string
and imported only when a task is asked for (late binding), so this module stays light."""
from __future__ import annotations

import importlib

from silab.errors import UsageError
from silab.tasks.base import Task

# name -> (module, class); the class is constructed without arguments
REGISTRY = {
    "arith": ("silab.tasks.arith", "ArithTask"),
    "gsm8k": ("silab.tasks.gsm8k", "GSM8KTask"),
    "math": ("silab.tasks.math_task", "MathTask"),
    "prontoqa": ("silab.tasks.prontoqa", "ProntoQATask"),
}


def task_names() -> list[str]:
    return sorted(REGISTRY)


def get_task(name: str) -> Task:
    """A fresh task object for a registered name; UsageError listing the known names otherwise."""
    if name not in REGISTRY:
        raise UsageError(f"unknown task '{name}' (known: {', '.join(task_names())})")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()
