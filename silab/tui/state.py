"""What the lab knows about a run: read from the run folder, then folded forward event by event.

Kept free of Textual so the same fold serves the live engine, a resumed run (its events.jsonl
replayed) and a read-only view, and so it can be tested without a screen.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from silab import protocol as P, runs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Engine states, as words on screen (no colour needed to tell them apart).
ENGINE_WORDS = {
    "view": "read-only", "starting": "starting", "idle": "waiting", "running": "running",
    "pausing": "pausing…", "paused": "paused", "stopping": "stopping…", "finished": "finished",
    "exited": "engine stopped", "died": "ENGINE DIED",
}


# ---------------------------------------------------------------------------------------------
# reading a run folder

def read_events(run_dir: Path) -> list[dict[str, Any]]:
    return [e for e in runs.read_jsonl(run_dir / "events.jsonl") if isinstance(e, dict)]


def read_profile(run_dir: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((run_dir / "profile.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


# ---------------------------------------------------------------------------------------------
# formatting helpers shared by widgets

def fmt_num(x: Any, digits: int = 3) -> str:
    """Compact number: 3 significant digits, '—' for missing or non-finite."""
    if x is None or isinstance(x, bool):
        return "—"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(x):
        return "∞" if x > 0 else ("-∞" if x < 0 else "—")
    return f"{x:.{digits}g}"


def fmt_pct(x: Any, decimals: int = 0) -> str:
    if x is None:
        return "—"
    try:
        return f"{100 * float(x):.{decimals}f}%"
    except (TypeError, ValueError):
        return "—"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---------------------------------------------------------------------------------------------
# the state

@dataclass
class PhaseProgress:
    """The phase in progress; rate and ETA come from event times, so replays read the same."""
    phase: str
    total: int | None = None
    done: int = 0
    started: float | None = None
    updated: float | None = None

    @property
    def rate(self) -> float | None:
        if self.started is None or self.updated is None or self.updated <= self.started:
            return None
        return self.done / (self.updated - self.started) if self.done else None

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if not rate or self.total is None:
            return None
        return max(self.total - self.done, 0) / rate


@dataclass
class LogLine:
    time: float | None
    kind: str        # event kind, or "stderr"
    text: str
    error: bool = False


@dataclass
class RunState:
    run_dir: Path
    name: str = ""
    profile_name: str = ""
    target_rounds: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)     # sigma, n_samples, lr (next round)
    schedule: Any = None                                       # "none"/preset/list of η per round
    n_external: int = 0
    engine: str = "view"
    round: int | None = None                                   # round in progress
    next_round: int | None = None
    progress: PhaseProgress | None = None
    phases_done: dict[str, float] = field(default_factory=dict)  # phase -> seconds, this round
    last_error: str | None = None
    t0: float | None = None

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def from_run_dir(cls, run_dir: Path) -> tuple["RunState", list[dict[str, Any]]]:
        """The state on disk, and the recorded events (already folded in) for the log."""
        run_dir = Path(run_dir)
        state = cls(run_dir=run_dir, name=run_dir.name)
        state.load_profile(read_profile(run_dir))
        events = read_events(run_dir)
        for ev in events:
            state.apply(ev)
        # rounds.jsonl is the authority on what completed (events can be cut short by a crash)
        for rec in runs.read_records(run_dir):
            state.add_record(rec)
        state.round, state.progress, state.phases_done = None, None, {}
        if state.records:
            state.next_round = state.records[-1]["round"] + 1
        state.engine = "view"
        return state, events

    def load_profile(self, profile: dict[str, Any]) -> None:
        self.profile_name = str(profile.get("name", "") or self.profile_name)
        if isinstance(profile.get("rounds"), int):
            self.target_rounds = profile["rounds"]
        for name, setting in P.SETTINGS.items():
            value = setting.read(profile)
            if name != "rounds" and value is not None:    # rounds: the target, kept apart
                self.settings[name] = value
        external = profile.get("external", {})
        if "schedule" in external:
            self.schedule = external["schedule"]
        self.n_external = int(profile.get("task", {}).get("n_external", self.n_external) or 0)

    def add_record(self, record: dict[str, Any]) -> None:
        if not isinstance(record.get("round"), int):
            return
        self.records = [r for r in self.records if r["round"] != record["round"]] + [record]
        self.records.sort(key=lambda r: r["round"])

    # -- queries ------------------------------------------------------------------------------

    @property
    def rounds_done(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        """The profile's last round is done and nothing runs: the run can only be extended."""
        return (self.target_rounds is not None and bool(self.records)
                and self.records[-1]["round"] >= self.target_rounds and not self.round_running)

    @property
    def round_running(self) -> bool:
        return self.engine in ("running", "pausing")

    @property
    def schedule_list(self) -> list[float] | None:
        return [float(x) for x in self.schedule] if isinstance(self.schedule, list) else None

    # -- folding events -----------------------------------------------------------------------

    def apply(self, ev: dict[str, Any]) -> LogLine | None:
        """Fold one event in; returns the log line it deserves (None for progress ticks)."""
        kind = ev.get("event")
        t = ev.get("time") if isinstance(ev.get("time"), (int, float)) else None
        if self.t0 is None and t is not None:
            self.t0 = float(t)
        rnd = ev.get("round")
        text: str | None = None
        error = False
        if kind == P.RUN_STARTED:
            if isinstance(ev.get("rounds"), int):
                self.target_rounds = ev["rounds"]
            if ev.get("profile"):
                self.profile_name = self.profile_name or Path(str(ev["profile"])).stem
            resumed = ev.get("resumed_from")
            text = "run started" if resumed is None else f"run resumed from round {resumed}"
            if self.engine != "view":
                self.engine = "starting"
                if ev.get("protocol") != P.VERSION:   # a live engine of another version
                    text += (f"; warning: the engine speaks protocol {ev.get('protocol', '1')}, "
                             f"this lab {P.VERSION}: some events may show wrongly")
                    error = True
        elif kind == P.PHASE_STARTED:
            phase = str(ev.get("phase", "?"))
            if rnd != self.round:
                self.phases_done = {}
            self.round = rnd if isinstance(rnd, int) else self.round
            self.progress = PhaseProgress(phase, _int(ev.get("total")), 0, t, t)
            if self.engine in ("idle", "paused", "starting", "finished"):
                self.engine = "running"
            text = f"round {rnd}: {P.PHASE_LABEL.get(phase, phase)}" + (
                f" ({ev['total']} {P.PHASE_UNIT.get(phase, 'items')})" if ev.get("total") else "")
        elif kind == P.PROGRESS:
            phase = str(ev.get("phase", "?"))
            if self.progress is None or self.progress.phase != phase:
                self.progress = PhaseProgress(phase, None, 0, t, t)
                self.round = rnd if isinstance(rnd, int) else self.round
            self.progress.done = _int(ev.get("done")) or 0
            self.progress.total = _int(ev.get("total")) if ev.get("total") is not None else self.progress.total
            self.progress.updated = t
            return None
        elif kind == P.PHASE_FINISHED:
            phase = str(ev.get("phase", "?"))
            secs = ev.get("seconds")
            self.phases_done[phase] = float(secs) if isinstance(secs, (int, float)) else 0.0
            if self.progress and self.progress.phase == phase:
                done = _int(ev.get("done"))
                if done is not None:
                    self.progress.done = done
                self.progress.updated = t
            text = f"round {rnd}: {phase} done in {fmt_duration(secs)}"
        elif kind == P.ROUND_FINISHED:
            rec = ev.get("record") or {}
            self.add_record(rec)
            self.next_round = (rec.get("round", rnd or 0) or 0) + 1
            self.round, self.progress, self.phases_done = None, None, {}
            text = (f"round {rec.get('round', rnd)} saved: U_s {fmt_num(rec.get('U_s'))}  "
                    f"U_v {fmt_num(rec.get('U_v'))}  G {fmt_num(rec.get('G'))}  "
                    f"test {fmt_pct(rec.get('test_acc'))}")
        elif kind == P.WAITING:
            self.next_round = _int(ev.get("next_round"), self.next_round)
            if self.engine not in ("view", "paused", "stopping"):  # paused is followed by waiting
                self.engine = "idle"
            text = f"waiting: next round {self.next_round}"
        elif kind == P.PAUSED:
            self.next_round = _int(ev.get("next_round"), self.next_round)
            self.round, self.progress, self.phases_done = None, None, {}
            if self.engine != "view":
                self.engine = "paused"
            text = f"paused: next round {self.next_round}"
        elif kind == P.SETTINGS_CHANGED:
            settings = dict(ev.get("settings") or {})
            if isinstance(settings.get("rounds"), int):   # the run was extended (or shortened)
                self.target_rounds = settings.pop("rounds")
                text = f"run extended: rounds up to {self.target_rounds}"
            self.settings.update(settings)
            if settings or text is None:
                text = "settings from round {}: {}".format(
                    ev.get("from_round", "?"), "  ".join(f"{k}={v}" for k, v in settings.items()))
        elif kind == P.PLAN_CHANGED:
            self.schedule = ev.get("schedule")
            text = "external plan: " + describe_schedule(self.schedule)
        elif kind == P.LOG:
            text = str(ev.get("message", ""))
        elif kind == P.ERROR:
            self.last_error = str(ev.get("message", "error"))
            text = "ERROR " + self.last_error
            tb = str(ev.get("traceback") or "").strip()
            if tb:
                text += "\n" + "\n".join("  " + ln for ln in tb.splitlines()[-6:])
            error = True
        elif kind == P.RUN_FINISHED:
            if self.engine != "view":
                self.engine = "finished"
            self.round, self.progress = None, None
            text = f"run finished: {ev.get('rounds_completed', self.rounds_done)} rounds"
        else:
            text = f"{kind}: " + json.dumps({k: v for k, v in ev.items() if k not in ("event", "time")})
        return LogLine(t, str(kind), text, error) if text is not None else None

    def relative(self, t: float | None) -> str:
        """Event time as +M:SS since the run began: stable across time zones and replays."""
        if t is None or self.t0 is None:
            return "     "
        return "+" + fmt_duration(max(t - self.t0, 0.0))


def describe_schedule(schedule: Any, limit: int = 12) -> str:
    """'r2 .10  r3 .10' for the rounds that get external data; words for presets and none."""
    if schedule is None or schedule == "none" or schedule == []:
        return "none"
    if isinstance(schedule, str):
        return f"{schedule} (preset)"
    try:
        shares = [float(x) for x in schedule]
    except (TypeError, ValueError):
        return str(schedule)
    parts = [f"r{i} {s:.2f}".replace(" 0.", " .") for i, s in enumerate(shares, start=1) if s > 0]
    if not parts:
        return "none"
    more = f" +{len(parts) - limit} more" if len(parts) > limit else ""
    return "  ".join(parts[:limit]) + more + f"  Σ{sum(shares):.2f}".replace("Σ0.", "Σ.")


def _int(x: Any, default: int | None = None) -> int | None:
    if isinstance(x, bool):
        return default
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return default
