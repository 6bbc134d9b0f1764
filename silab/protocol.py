"""The engine ↔ lab protocol: every name that crosses the process boundary. Stdlib only, so the
engine, the console printer, the lab and the test stand-in engine all import this one module.

The engine (`python -m silab.engine RUN`) writes events on stdout, one JSON object per line: the
same objects it appends to RUN/events.jsonl, so a replayed run folds exactly like a live one. The
lab writes commands on the engine's stdin, one JSON object per line. Bump VERSION when a kind, a
field or a setting changes; a test pins it, and the lab says so when an engine speaks another.
"""
from __future__ import annotations

from dataclasses import dataclass

VERSION = 2

# --- events: {"event": KIND, "time": unix seconds, **fields} -----------------------------------
RUN_STARTED = "run_started"            # run_dir, profile, rounds, resumed_from, protocol
PHASE_STARTED = "phase_started"        # round, phase, total
PROGRESS = "progress"                  # round (None while building), phase, done, total
PHASE_FINISHED = "phase_finished"      # round, phase, seconds, done
ROUND_FINISHED = "round_finished"      # round, record (the line added to rounds.jsonl)
WAITING = "waiting"                    # next_round: idle until a step / run command
PAUSED = "paused"                      # next_round
SETTINGS_CHANGED = "settings_changed"  # settings {name: value}, from_round
PLAN_CHANGED = "plan_changed"          # schedule: the shares eta_1..eta_T now planned
LOG = "log"                            # message
ERROR = "error"                        # message, traceback, fatal (the engine exits when true)
RUN_FINISHED = "run_finished"          # rounds_completed
EVENTS = (RUN_STARTED, PHASE_STARTED, PROGRESS, PHASE_FINISHED, ROUND_FINISHED, WAITING, PAUSED,
          SETTINGS_CHANGED, PLAN_CHANGED, LOG, ERROR, RUN_FINISHED)

# --- commands: {"cmd": KIND, **fields} ----------------------------------------------------------
STEP = "step"      # one round, then wait
RUN = "run"        # rounds up to the profile's last, then wait
PAUSE = "pause"    # wait after the current phase (a round paused before its last phase restarts)
STOP = "stop"      # exit after the current phase
SET = "set"        # {name: value} for names in SETTINGS; effective from the next round
INJECT = "inject"  # schedule: a name in SCHEDULES or a list of shares [eta_1, ...]
COMMANDS = (STEP, RUN, PAUSE, STOP, SET, INJECT)

# --- phases, in their order inside a round; "build" makes the organism before round 0 ---------
PHASES = ("train", "sample", "judge", "evaluate")
BUILD = "build"
PHASE_LABEL = {BUILD: "building organism", "train": "training", "sample": "sampling",
               "judge": "judging", "evaluate": "evaluating"}
PHASE_UNIT = {BUILD: "steps", "train": "examples", "sample": "prompts", "judge": "samples",
              "evaluate": "items"}


# --- what the lab may steer between rounds ---------------------------------------------------
@dataclass(frozen=True)
class Setting:
    key: str                 # the profile key it sets
    label: str               # what the lab calls it
    type: type               # int or float
    lo: float | None = None  # the profile's own range for that key (a test keeps them equal)
    hi: float | None = None  # (the profile enforces them, for --set, the lab and the engine alike)

    def read(self, profile: dict, default=None):
        """Its value in a profile as a dict of tables (profile.toml, Profile.to_dict())."""
        node = profile
        for part in self.key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


SETTINGS = {
    "sigma": Setting("verify.sigma", "σ", float, 0.0, 1.0),
    "n_samples": Setting("sampling.n_samples", "N", int, 1, 1024),
    "lr": Setting("train.lr", "lr", float, 0.0, 1.0),
    "rounds": Setting("rounds", "rounds", int, 0),   # the last round `run` goes to: extends a run
}

# --- external data: how a pool M is spent over rounds 1..T (shares: silab.config) -------------
SCHEDULES = ("none", "early", "uniform", "late")
INJECT_PRESETS = ("early", "uniform", "late")   # the lab's inject keys; a list of shares also goes
