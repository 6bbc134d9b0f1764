"""Starting and resuming runs: the steps shared by `silab run`, the interactive engine and the sweep.

    start = new_run(profile, run_dir)        # or resume_run(run_dir, overrides)
    loop = start.loop(emit)                  # the model loads, the last completed round is restored
    while loop.next_round <= loop.p.rounds:  # or run_rounds(start, emit), which also records failures
        loop.run_round()

Everything that can be bad input (profile, model path, data files, run folder, a --set given with
--resume) is checked before the first file is written, so a refused command leaves nothing behind.
Once `new_run` / `resume_run` return, the run folder exists: a Ctrl-C or a failure while the model
loads can say where the run is (start.run.path).
"""
from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from silab.config import Profile, load_profile
from silab.engine import backends
from silab.engine.backend import Backend
from silab.engine.loop import Control, RoundLoop, manifest, profile_toml, record_event
from silab.errors import UsageError
from silab.protocol import ERROR, RUN_FINISHED
from silab.runs.store import RunDir, default_run_dir
from silab.tasks import Splits, get_task, split_items


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


@dataclass(frozen=True)
class Start:
    """A run whose input was checked and whose folder is written: all a RoundLoop needs but the model."""
    profile: Profile
    run: RunDir
    splits: Splits

    def loop(self, emit: Callable[[dict], None], control: Control | None = None,
             backend: Backend | None = None) -> RoundLoop:
        """The loop, ready for its next round: the backend started (or the given one: the arms of a
        sweep share one model load) and the last completed round restored."""
        return RoundLoop(self.profile, self.run, self.splits, emit, control, backend)


def split_data(profile: Profile) -> Splits:
    """The task's data split (bad data files are bad input: this runs before anything is written)."""
    return split_items(get_task(profile.task.name), profile.task, profile.seed)


def new_run(profile: Profile, run_dir: str | Path | None, splits: Splits | None = None) -> Start:
    """A new run; `splits` reuses a split of the same task and seed (the arms of a sweep share one)."""
    check_runtime(profile)
    path = Path(run_dir) if run_dir else default_run_dir(profile.run_root, profile.name)
    RunDir.check_new(path)  # before the data and the model are loaded
    splits = splits or split_data(profile)
    return Start(profile, RunDir.create(path, profile_toml(profile), manifest(profile, sys.argv)), splits)


def resume_run(run_dir: str | Path, overrides: list[str] = (), rounds: int | None = None) -> Start:
    """Continue a run after its last completed round. Settings given now (`--set`, `--rounds`; the
    model's own included) hold from the first round run, so they apply before the model loads:
    validated as a whole profile, then written to the run's profile.toml. A half-written round
    is dropped."""
    run = RunDir.open(Path(run_dir))
    profile = load_profile(str(run.path / "profile.toml"), overrides, rounds)
    check_runtime(profile)
    splits = split_data(profile)
    if overrides or rounds is not None:
        run.write_profile(profile_toml(profile))
    run.discard_partial()
    return Start(profile, run, splits)


def run_rounds(start: Start, emit: Callable[[dict], None], backend: Backend | None = None) -> RoundLoop:
    """Start the loop and run rounds up to the profile's last; returns the loop, its backend still up
    (the caller reuses or closes it). A failure is recorded as an `error` event with its traceback,
    then raised; completed rounds stay on disk."""
    try:
        loop = start.loop(emit, backend=backend)
        while loop.next_round <= loop.p.rounds:
            loop.run_round()
    except UsageError:
        raise
    except Exception as exc:
        record_event(start.run, emit, ERROR, message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        raise
    loop.emit(RUN_FINISHED, rounds_completed=len(loop.run.completed()))
    return loop
