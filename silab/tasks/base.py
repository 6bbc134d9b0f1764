"""What every task provides: items to solve, and a checker that says whether an answer is right."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from silab.config import TaskConfig


@dataclass(frozen=True)
class Item:
    """One problem. `question` is raw text; the profile's prompt template wraps it."""
    id: str
    question: str
    gold: str
    solution: str | None = None  # a reference solution, for the external data pool


class Task(Protocol):
    name: str

    def extract_answer(self, text: str) -> str | None: ...

    def is_correct(self, text: str, gold: str) -> bool: ...

    def load(self, cfg: TaskConfig, split: str) -> tuple[list[Item], int]:
        """Items of `split` ("train" or "test") and how many rows were skipped (no usable answer)."""
        ...
