"""Run folders: everything a run produces, written so that a crash never corrupts what was done.

    RUN/profile.toml   the resolved profile       RUN/rounds.jsonl   one line per completed round
    RUN/manifest.json  versions, seed, commit     RUN/rounds/NNN/    that round's samples and adapter
    RUN/events.jsonl   one event per line

A round is written into rounds/.NNN.tmp and renamed to rounds/NNN when complete; rounds.jsonl is
rewritten (atomically) from the completed folders, so the two never disagree.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

from silab.errors import UsageError


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Lines of a JSON-lines file; a torn last line (a crash mid-append) is ignored."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def is_run(path: Path) -> bool:
    path = Path(path)
    return (path / "profile.toml").is_file() and (path / "manifest.json").is_file()


def read_records(run_dir: Path) -> list[dict]:
    """The completed rounds of a run, in order (what the theory and the UI read): rounds.jsonl, or
    the round folders' summaries when that index lags behind them (a crash between a round's
    rename and the index rewrite; the next resume re-derives it)."""
    run = RunDir(run_dir)
    index = read_jsonl(run.path / "rounds.jsonl")
    if run.rounds_dir.is_dir() and len(index) != len(run.completed()):
        return run.records()
    return index


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.rounds_dir = self.path / "rounds"

    # --- the folder rules (one place, one message each), creation and opening ---------------
    @staticmethod
    def check_new(path: Path) -> Path:
        """A new run (or sweep) goes into a folder that is absent or empty, never over another."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            hint = f" (use --resume {path} to continue it)" if is_run(path) else ""
            raise UsageError(f"{path}: folder exists and is not empty{hint}")
        return path

    @staticmethod
    def check_run(path: Path) -> Path:
        """An existing run folder, to resume or view."""
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"{path}: no such run folder")
        if not is_run(path):
            raise UsageError(f"{path}: not a silab run folder (no profile.toml and manifest.json)")
        return path

    @classmethod
    def create(cls, path: Path, profile_toml: str, manifest: dict) -> "RunDir":
        path = cls.check_new(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.rounds_dir.mkdir(exist_ok=True)
        atomic_write_text(path / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        atomic_write_text(path / "profile.toml", profile_toml)  # last: its presence marks a run
        return run

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        run = cls(cls.check_run(path))
        run.rounds_dir.mkdir(exist_ok=True)
        return run

    def discard_partial(self) -> None:
        """Remove half-written rounds left by a crash, and re-derive rounds.jsonl."""
        for tmp in self.rounds_dir.glob(".*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        self._rewrite_index()

    # --- reading ------------------------------------------------------------------------------
    def completed(self) -> list[int]:
        return sorted(int(p.name) for p in self.rounds_dir.iterdir() if p.name.isdigit() and p.is_dir())

    def round_dir(self, t: int) -> Path:
        return self.rounds_dir / f"{t:03d}"

    def records(self) -> list[dict]:
        return [json.loads((self.round_dir(t) / "summary.json").read_text()) for t in self.completed()]

    # --- writing ------------------------------------------------------------------------------
    def event(self, event: dict) -> None:
        with open(self.path / "events.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    def write_round(self, t: int, record: dict, files: dict[str, list[dict]],
                    save_adapter: Callable[[Path], None] | None) -> None:
        tmp = self.rounds_dir / f".{t:03d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, rows in files.items():
            write_jsonl(tmp / name, rows)
        if save_adapter is not None:
            save_adapter(tmp / "adapter")
        (tmp / "summary.json").write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, self.round_dir(t))
        self._rewrite_index()

    def _rewrite_index(self) -> None:
        text = "".join(json.dumps(r) + "\n" for r in self.records())
        atomic_write_text(self.path / "rounds.jsonl", text)

    def write_profile(self, profile_toml: str) -> None:
        atomic_write_text(self.path / "profile.toml", profile_toml)


def default_run_dir(run_root: str, profile_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(run_root) / f"{profile_name}-{stamp}"


ARM_ORDER = ("none", "early", "uniform", "late")   # a sweep's arms, control first


def _arm_key(path: Path) -> tuple:
    arm, _, seed = path.name.rpartition("-s")
    order = ARM_ORDER.index(arm) if arm in ARM_ORDER else len(ARM_ORDER)
    return (int(seed) if seed.isdigit() else 0, order, path.name)


def expand_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders as named; a folder of runs (a sweep's) as all of them, control arm first."""
    out: list[Path] = []
    for path in map(Path, paths):
        if is_run(path):
            out.append(path)
            continue
        if not path.is_dir():
            raise UsageError(f"{path}: no such run folder")
        inner = sorted((p for p in path.iterdir() if p.is_dir() and is_run(p)), key=_arm_key)
        if not inner:
            raise UsageError(f"{path}: not a silab run folder (no profile.toml and manifest.json) "
                             "nor a folder of runs such as a sweep's")
        out += inner
    return out


def run_labels(paths: list[Path]) -> list[str]:
    """Short names for a legend: the folder name, with its parent's where names repeat."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
