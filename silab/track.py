"""`--track tensorboard|wandb`: each completed round's record logged with the round as the step.

A tracker is one more consumer of the engine's events: it opens on `run_started` (which names the
run folder), logs every `round_finished` record's numbers (nested ones flattened: pass_at_k/4,
seconds/train), and closes on `run_finished`. The tracker's run id is kept in RUN/tracker.json,
so a resumed run continues the same tracker run (TensorBoard: the same log folder, RUN/tensorboard;
W&B: the same run id, resume="allow"; WANDB_MODE=offline works without an account).

The trackers are optional extras (pip install 'silab[track-tb]' or 'silab[track-wandb]'); asking
for one that is not installed is bad input, refused before anything is written.
"""
from __future__ import annotations

import importlib.util
import json
import math
import uuid
from pathlib import Path
from typing import Any, Callable

from silab.errors import UsageError
from silab.protocol import ROUND_FINISHED, RUN_FINISHED, RUN_STARTED

TRACKERS = {"tensorboard": ("tensorboard", "track-tb"), "wandb": ("wandb", "track-wandb")}
STATE_FILE = "tracker.json"


def check_tracker(kind: str) -> None:
    """Bad input unless `kind` is a tracker whose package is installed."""
    if kind not in TRACKERS:
        raise UsageError(f"--track: unknown tracker {kind!r} (choose tensorboard or wandb)")
    module, extra = TRACKERS[kind]
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"--track {kind} needs the {module} package: pip install 'silab[{extra}]'")


def scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The record's numbers, nested keys joined with '/' (lists and strings are left out)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "round" \
                and math.isfinite(value):
            out[name] = float(value)
    return out


class Tracker:
    """Feed it the engine's events (it is an emit callback); `then` gets them too."""

    def __init__(self, kind: str, then: Callable[[dict], None] | None = None) -> None:
        check_tracker(kind)
        self.kind, self.then = kind, then
        self.writer: Any = None

    def __call__(self, event: dict) -> None:
        if self.then is not None:
            self.then(event)
        kind = event.get("event")
        if kind == RUN_STARTED:
            self.open(Path(event["run_dir"]), str(event.get("profile", "")))
        elif kind == ROUND_FINISHED and self.writer is not None:
            record = event["record"]
            self.log(int(record["round"]), scalars(record))
        elif kind == RUN_FINISHED:
            self.close()

    def open(self, run_dir: Path, profile: str) -> None:
        if self.writer is not None:
            return
        state_path = run_dir / STATE_FILE
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        if state and state.get("kind") != self.kind:
            raise UsageError(f"{state_path}: this run is tracked with {state.get('kind')}, not {self.kind}")
        if self.kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            log_dir = state.get("log_dir") or str(run_dir / "tensorboard")
            self.writer = SummaryWriter(log_dir=log_dir)
            state = {"kind": self.kind, "log_dir": log_dir}
        else:
            import wandb

            run_id = state.get("id") or uuid.uuid4().hex[:12]     # W&B ids: [a-z0-9]
            self.writer = wandb.init(project=state.get("project", "silab"), id=run_id,
                                     name=run_dir.name, resume="allow", dir=str(run_dir),
                                     config={"profile": profile, "run_dir": str(run_dir)})
            state = {"kind": self.kind, "id": run_id, "project": state.get("project", "silab")}
        from silab.runs.store import atomic_write_text

        atomic_write_text(state_path, json.dumps(state) + "\n")

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.kind == "tensorboard":
            for name, value in values.items():
                self.writer.add_scalar(name, value, global_step=step)
            self.writer.flush()
        else:
            self.writer.log(values, step=step)

    def close(self) -> None:
        if self.writer is not None:
            (self.writer.close if self.kind == "tensorboard" else self.writer.finish)()
            self.writer = None
