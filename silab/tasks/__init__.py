"""Tasks: datasets, prompt formatting, answer extraction and checking.

`get_task(name)` is the registry (silab/tasks/registry.py); task modules are imported only when
asked for, so importing silab.tasks stays cheap (no datasets import) and a missing task module
breaks only that task.
"""
from __future__ import annotations

from silab.errors import UsageError
from silab.tasks.base import Item, Task
from silab.tasks.loading import Splits, split_items
from silab.tasks.prompts import format_prompt
from silab.tasks.registry import REGISTRY, get_task, task_names

__all__ = ["REGISTRY", "Item", "Task", "Splits", "UsageError", "format_prompt", "get_task", "split_items", "task_names"]
