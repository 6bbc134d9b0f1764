"""Tasks: datasets, prompt formatting, answer extraction and checking.

`get_task(name)` is the registry; task modules are imported only when asked for, so importing
silab.tasks stays cheap (no datasets import) and a missing task module breaks only that task.
"""
from __future__ import annotations

import importlib

from silab.errors import UsageError
from silab.tasks.base import Item, Task
from silab.tasks.loading import Splits, split_items
from silab.tasks.prompts import format_prompt

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


__all__ = ["Item", "Task", "Splits", "UsageError", "format_prompt", "get_task", "split_items", "task_names"]
