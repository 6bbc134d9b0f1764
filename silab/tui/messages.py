"""Every message the lab passes between its parts.

The engine client runs on the app's event loop and posts these, so widgets never touch the
subprocess and the UI stays a pure function of the events it has seen.
"""
from __future__ import annotations

from typing import Any

from textual.message import Message


class EngineEvent(Message):
    """One event line from the engine's stdout (the same dict that goes to events.jsonl)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class EngineOutput(Message):
    """One line the engine wrote to stderr (or a stdout line that was not JSON)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class EngineExited(Message):
    """The engine process ended; returncode says how (None when it never started)."""

    def __init__(self, returncode: int | None, reason: str = "") -> None:
        super().__init__()
        self.returncode = returncode
        self.reason = reason


class FitReady(Message):
    """A background fit of the coupled model finished for `n_rounds` records."""

    def __init__(self, fit: Any, n_rounds: int) -> None:
        super().__init__()
        self.fit = fit
        self.n_rounds = n_rounds
