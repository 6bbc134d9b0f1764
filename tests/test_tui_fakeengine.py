"""A stand-in engine that speaks the DESIGN.md subprocess protocol, plus tests that it does.

The lab's pilot tests and the key-latency benchmark run against it when the real engine (or a
micro model) is not at hand; it is a script as well as a test module:

    python tests/test_tui_fakeengine.py RUN_DIR [--new PROFILE] [--set k=v ...]

It writes a real run folder (through silab.runs) with synthetic, deterministic metrics that decay
as e^{-λt}. Timing knobs come from the environment: FAKE_TICK (seconds per progress event),
FAKE_TICKS (progress events per phase), FAKE_CRASH_ROUND (exit 3 in the middle of that round).
"""
from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path

FAKE_ENGINE = Path(__file__).resolve()
PHASES = ("train", "sample", "judge", "evaluate")


def fake_argv(run_dir: Path, new_profile: str | None = None, overrides=()) -> list[str]:
    argv = [sys.executable, str(FAKE_ENGINE), str(run_dir)]
    if new_profile is not None:
        argv += ["--new", str(new_profile)]
        for o in overrides:
            argv += ["--set", o]
    return argv


def synthetic_record(t: int, settings: dict, external: int = 0) -> dict:
    """Round t's metrics: U_s, U_v fall as e^{-0.45 t} towards 9.0 and 8.2; G follows."""
    decay = math.exp(-0.45 * t)
    wobble = 0.04 * math.sin(1.7 * t)
    u_s = 9.0 + 6.0 * decay + wobble
    u_v = 8.2 + 3.5 * decay - wobble / 2
    n_prompts, n = 8, int(settings["n_samples"])
    return {
        "round": t, "U_s": u_s, "U_v": u_v, "G": u_s - u_v,
        "U_s_tok": u_s / 6, "U_v_tok": u_v / 6, "G_tok": (u_s - u_v) / 6,
        "solver_acc": 0.62 - 0.35 * decay, "verifier_acc": 0.74 - 0.3 * decay,
        "test_acc": 0.58 - 0.33 * decay, "test_greedy_acc": 0.6 - 0.33 * decay,
        "judge_auc": 0.7, "judge_agreement": 0.66, "fallbacks": 0,
        "n_prompts": n_prompts, "n_samples": n, "sigma": settings["sigma"], "lr": settings["lr"],
        "external": external,
        "seconds": {"train": 0.0 if t == 0 else 1.5, "sample": 2.0, "judge": 1.0,
                    "evaluate": 0.5, "total": 5.0 if t else 3.5},
    }


# ---------------------------------------------------------------------------------------------
# the engine

class FakeEngine:
    def __init__(self, argv: list[str]) -> None:
        from silab.config import dump_toml, load_profile, profile_from_dict
        from silab.runs import RunDir

        self.dump_toml = dump_toml
        args = list(argv)
        self.run_dir = Path(args.pop(0))
        new = sets = None
        sets = []
        while args:
            flag = args.pop(0)
            if flag == "--new":
                new = args.pop(0)
            elif flag == "--set":
                sets.append(args.pop(0))
        if new is not None:
            profile = load_profile(new, sets)
            self.run = RunDir.create(self.run_dir, dump_toml(profile.to_dict()),
                                     {"engine": "fake", "argv": argv})
            resumed = None
        else:
            import tomllib
            self.run = RunDir.open(self.run_dir)
            self.run.discard_partial()
            profile = profile_from_dict(tomllib.loads((self.run_dir / "profile.toml").read_text()),
                                        "profile.toml")
            resumed = len(self.run.completed()) - 1 if self.run.completed() else None
        self.profile = profile.to_dict()
        self.next = len(self.run.completed())
        self.tick = float(os.environ.get("FAKE_TICK", "0.02"))
        self.ticks = int(os.environ.get("FAKE_TICKS", "5"))
        self.crash = int(os.environ.get("FAKE_CRASH_ROUND", "-1"))
        self.commands: queue.Queue = queue.Queue()
        self.pause_requested = self.stop_requested = False
        threading.Thread(target=self._read_stdin, daemon=True).start()
        self.emit("run_started", run_dir=str(self.run_dir), profile=self.profile["name"],
                  rounds=self.profile["rounds"], resumed_from=resumed)

    # io ---------------------------------------------------------------------------------------
    def emit(self, kind: str, **fields) -> None:
        event = {"event": kind, "time": time.time(), **fields}
        self.run.event(event)
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError:
                continue
            # pause and stop act between phases, so they must be seen while a round runs
            if cmd.get("cmd") == "pause":
                self.pause_requested = True
            elif cmd.get("cmd") == "stop":
                self.stop_requested = True
            self.commands.put(cmd)
        self.stop_requested = True
        self.commands.put({"cmd": "stop"})

    # commands ---------------------------------------------------------------------------------
    @property
    def settings(self) -> dict:
        p = self.profile
        return {"sigma": p["verify"]["sigma"], "n_samples": p["sampling"]["n_samples"],
                "lr": p["train"]["lr"]}

    def handle_set(self, cmd: dict) -> None:
        from silab.config import profile_from_dict
        from silab.errors import UsageError

        data = json.loads(json.dumps(self.profile))
        where = {"sigma": ("verify", "sigma"), "n_samples": ("sampling", "n_samples"),
                 "lr": ("train", "lr"), "rounds": (None, "rounds")}
        changed = {}
        for key, (table, name) in where.items():
            if key in cmd:
                (data[table] if table else data)[name] = cmd[key]
                changed[key] = cmd[key]
        try:
            profile_from_dict(data, "set")
        except UsageError as err:
            self.emit("error", message=str(err), traceback="")
            return
        self.profile = data
        self.run.write_profile(self.dump_toml(data))
        self.emit("settings_changed", settings=changed, from_round=self.next)

    def handle_inject(self, cmd: dict) -> None:
        schedule = cmd.get("schedule")
        rounds = self.profile["rounds"]
        if schedule in ("early", "uniform", "late"):
            weights = {"early": [0.5 ** i for i in range(rounds)],
                       "uniform": [1.0] * rounds,
                       "late": [0.5 ** (rounds - 1 - i) for i in range(rounds)]}[schedule]
            schedule = [round(w / sum(weights), 4) for w in weights]
        if not isinstance(schedule, list) or sum(schedule) > 1 + 1e-9 or any(s < 0 for s in schedule):
            self.emit("error", message=f"inject: bad schedule {cmd.get('schedule')!r}", traceback="")
            return
        self.profile["external"]["schedule"] = schedule
        self.run.write_profile(self.dump_toml(self.profile))
        self.emit("plan_changed", schedule=schedule)

    # rounds -----------------------------------------------------------------------------------
    def run_round(self) -> bool:
        """One round; False when it was cut short by pause or stop (nothing saved)."""
        t = self.next
        for phase in PHASES:
            if phase == "train" and t == 0:
                continue
            total = self.ticks * 4
            self.emit("phase_started", round=t, phase=phase, total=total)
            start = time.time()
            for i in range(1, self.ticks + 1):
                time.sleep(self.tick)
                if t == self.crash and phase == "judge" and i == 2:
                    sys.stderr.write("RuntimeError: CUDA out of memory (fake)\n")
                    sys.stderr.flush()
                    os._exit(3)
                self.emit("progress", round=t, phase=phase, done=4 * i, total=total)
            self.emit("phase_finished", round=t, phase=phase, seconds=time.time() - start, done=total)
            if self.pause_requested or self.stop_requested:
                return False
        record = synthetic_record(t, self.settings)
        self.run.write_round(t, record, {"samples.jsonl": [], "test.jsonl": []}, None)
        self.emit("round_finished", round=t, record=record)
        self.next = t + 1
        return True

    def main(self) -> int:
        self.emit("waiting", next_round=self.next)
        while True:
            cmd = self.commands.get()
            kind = cmd.get("cmd")
            if kind == "stop":
                return 0
            if kind == "pause":
                self.pause_requested = False
                continue
            if kind == "set":
                self.handle_set(cmd)
            elif kind == "inject":
                self.handle_inject(cmd)
            elif kind in ("step", "run"):
                while True:
                    done = self.run_round()
                    if self.stop_requested:
                        return 0
                    if not done:
                        self.pause_requested = False
                        self.emit("paused", next_round=self.next)
                        break
                    self._drain_settings()
                    if kind == "step" or self.next > self.profile["rounds"]:
                        break
                if self.next > self.profile["rounds"]:
                    self.emit("run_finished", rounds_completed=self.next)
                self.emit("waiting", next_round=self.next)
                continue
            else:
                self.emit("error", message=f"unknown command {kind!r}", traceback="")

    def _drain_settings(self) -> None:
        """Apply set/inject commands that arrived while a round ran (they are for the next one)."""
        pending = []
        while not self.commands.empty():
            cmd = self.commands.get()
            if cmd.get("cmd") == "set":
                self.handle_set(cmd)
            elif cmd.get("cmd") == "inject":
                self.handle_inject(cmd)
            elif cmd.get("cmd") != "pause":
                pending.append(cmd)
        for cmd in pending:
            self.commands.put(cmd)


# ---------------------------------------------------------------------------------------------
# tests of the stand-in itself (so the lab's tests rest on a protocol-true engine)

def write_profile(path: Path, rounds: int = 4) -> Path:
    path.write_text(f'name = "fake"\nrounds = {rounds}\n[task]\nn_prompts = 8\nn_external = 32\n'
                    '[sampling]\nn_samples = 4\n')
    return path


def test_fake_engine_speaks_the_protocol(tmp_path):
    import subprocess

    profile = write_profile(tmp_path / "p.toml", rounds=1)
    run = tmp_path / "run"
    proc = subprocess.Popen(fake_argv(run, str(profile)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "FAKE_TICK": "0"})
    proc.stdin.write('{"cmd": "run"}\n')
    proc.stdin.flush()
    events = []
    for line in proc.stdout:  # EOF on stdin means stop, so keep it open until the run is done
        events.append(json.loads(line))
        if events[-1]["event"] == "run_finished":
            proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and "round_finished" in kinds and "run_finished" in kinds
    assert all("time" in e for e in events)
    rounds = [json.loads(x) for x in (run / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1]
    assert (run / "events.jsonl").read_text().count("\n") == len(events)


if __name__ == "__main__":
    sys.exit(FakeEngine(sys.argv[1:]).main())
