"""A stand-in engine that speaks the DESIGN.md subprocess protocol, plus tests that it does.

The lab's pilot tests and the key-latency benchmark run against it when the real engine (or a
micro model) is not at hand; it is a script as well as a test module:

    python tests/test_tui_fakeengine.py RUN_DIR [--new PROFILE] [--set k=v ...]

It writes a real run folder (through silab.runs) with synthetic, deterministic metrics that decay
as e^{-λt}. Every kind, setting and schedule it knows comes from silab.protocol and silab.config,
as the real engine's do; the tests below hold it to that. Timing knobs come from the environment: FAKE_TICK (seconds per progress event),
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

from silab import protocol as P

FAKE_ENGINE = Path(__file__).resolve()


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
        self.emit(P.RUN_STARTED, run_dir=str(self.run_dir), profile=self.profile["name"],
                  rounds=self.profile["rounds"], resumed_from=resumed, protocol=P.VERSION)

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
            if cmd.get("cmd") == P.PAUSE:
                self.pause_requested = True
            elif cmd.get("cmd") == P.STOP:
                self.stop_requested = True
            self.commands.put(cmd)
        self.stop_requested = True
        self.commands.put({"cmd": P.STOP})

    # commands ---------------------------------------------------------------------------------
    @property
    def settings(self) -> dict:
        """{name: value} for protocol.SETTINGS, read from the profile by each setting's key."""
        return {name: s.read(self.profile) for name, s in P.SETTINGS.items()}

    def _update(self, changes: dict) -> dict | None:
        """The profile with {dotted key: value}, validated as a whole (as loop.update does); None
        (and an error event) when refused."""
        from silab.config import apply_overrides, profile_from_dict
        from silab.errors import UsageError

        try:
            data = apply_overrides(profile_from_dict(self.profile, "profile.toml"),
                                   [f"{key}={json.dumps(value)}" for key, value in changes.items()], "set").to_dict()
        except UsageError as err:
            self.emit(P.ERROR, message=str(err), traceback="")
            return None
        self.profile = data
        self.run.write_profile(self.dump_toml(data))
        return data

    def handle_set(self, cmd: dict) -> None:
        unknown = set(cmd) - {"cmd", *P.SETTINGS}
        if unknown:
            self.emit(P.ERROR, message=f"set: unknown setting(s) {', '.join(sorted(unknown))}", traceback="")
            return
        changed = {name: cmd[name] for name in P.SETTINGS if name in cmd}
        if self._update({P.SETTINGS[name].key: v for name, v in changed.items()}) is not None:
            self.emit(P.SETTINGS_CHANGED, settings=changed, from_round=self.next)

    def handle_inject(self, cmd: dict) -> None:
        """A name in protocol.SCHEDULES or a list of shares; the plan is the shares the profile's
        schedule gives (silab.config.schedule_shares), as the real engine announces it."""
        from silab.config import schedule_shares

        data = self._update({"external.schedule": cmd.get("schedule")})
        if data is not None:
            self.emit(P.PLAN_CHANGED, schedule=schedule_shares(data["external"]["schedule"], data["rounds"]))

    # rounds -----------------------------------------------------------------------------------
    def run_round(self) -> bool:
        """One round; False when it was cut short by pause or stop (nothing saved)."""
        t = self.next
        for phase in P.PHASES:
            if phase == P.PHASES[0] and t == 0:   # round 0 only measures
                continue
            total = self.ticks * 4
            self.emit(P.PHASE_STARTED, round=t, phase=phase, total=total)
            start = time.time()
            for i in range(1, self.ticks + 1):
                time.sleep(self.tick)
                if t == self.crash and phase == P.PHASES[2] and i == 2:
                    sys.stderr.write("RuntimeError: CUDA out of memory (fake)\n")
                    sys.stderr.flush()
                    os._exit(3)
                self.emit(P.PROGRESS, round=t, phase=phase, done=4 * i, total=total)
            self.emit(P.PHASE_FINISHED, round=t, phase=phase, seconds=time.time() - start, done=total)
            if self.pause_requested or self.stop_requested:
                return False
        record = synthetic_record(t, self.settings)
        self.run.write_round(t, record, {"samples.jsonl": [], "test.jsonl": []}, None)
        self.emit(P.ROUND_FINISHED, round=t, record=record)
        self.next = t + 1
        return True

    def main(self) -> int:
        self.emit(P.WAITING, next_round=self.next)
        while True:
            cmd = self.commands.get()
            kind = cmd.get("cmd")
            if kind == P.STOP:
                return 0
            if kind == P.PAUSE:
                self.pause_requested = False
                continue
            if kind == P.SET:
                self.handle_set(cmd)
            elif kind == P.INJECT:
                self.handle_inject(cmd)
            elif kind in (P.STEP, P.RUN):
                while True:
                    done = self.run_round()
                    if self.stop_requested:
                        return 0
                    if not done:
                        self.pause_requested = False
                        self.emit(P.PAUSED, next_round=self.next)
                        break
                    self._drain_settings()
                    if kind == P.STEP or self.next > self.profile["rounds"]:
                        break
                if self.next > self.profile["rounds"]:
                    self.emit(P.RUN_FINISHED, rounds_completed=self.next)
                self.emit(P.WAITING, next_round=self.next)
                continue
            else:
                self.emit(P.ERROR, message=f"unknown command {cmd!r} (known: {', '.join(P.COMMANDS)})",
                          traceback="")

    def _drain_settings(self) -> None:
        """Apply set/inject commands that arrived while a round ran (they are for the next one)."""
        pending = []
        while not self.commands.empty():
            cmd = self.commands.get()
            if cmd.get("cmd") == P.SET:
                self.handle_set(cmd)
            elif cmd.get("cmd") == P.INJECT:
                self.handle_inject(cmd)
            elif cmd.get("cmd") != P.PAUSE:
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
    proc.stdin.write(json.dumps({"cmd": P.RUN}) + "\n")
    proc.stdin.flush()
    events = []
    for line in proc.stdout:  # EOF on stdin means stop, so keep it open until the run is done
        events.append(json.loads(line))
        if events[-1]["event"] == P.RUN_FINISHED:
            proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    kinds = [e["event"] for e in events]
    assert kinds[0] == P.RUN_STARTED and P.ROUND_FINISHED in kinds and P.RUN_FINISHED in kinds
    assert all("time" in e for e in events)
    rounds = [json.loads(x) for x in (run / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1]
    assert (run / "events.jsonl").read_text().count("\n") == len(events)


def test_the_protocol_version_is_pinned():
    """Bump it (and this test) when a kind, a field or a setting changes: the lab warns when an
    engine of another version speaks to it."""
    assert P.VERSION == 2
    assert len(set(P.EVENTS)) == len(P.EVENTS) == 12 and len(set(P.COMMANDS)) == len(P.COMMANDS) == 6


def test_the_stand_in_accepts_every_command_and_emits_only_protocol_events(tmp_path):
    import subprocess

    from silab.config import schedule_shares

    rounds = 2
    profile = write_profile(tmp_path / "p.toml", rounds=rounds)
    proc = subprocess.Popen(fake_argv(tmp_path / "run", str(profile)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "FAKE_TICK": "0"})
    events: list[dict] = []

    def send(cmd: dict, until: str | None) -> list[dict]:
        proc.stdin.write(json.dumps(cmd) + "\n")
        proc.stdin.flush()
        got = []
        while until is not None and (not got or got[-1]["event"] != until):
            got.append(json.loads(proc.stdout.readline()))
        events.extend(got)
        return got

    events.append(json.loads(proc.stdout.readline()))
    events.append(json.loads(proc.stdout.readline()))
    assert [e["event"] for e in events] == [P.RUN_STARTED, P.WAITING]
    assert events[0]["protocol"] == P.VERSION
    sent = []
    for cmd, until in (({"cmd": P.SET, "sigma": 0.7}, P.SETTINGS_CHANGED),
                       ({"cmd": P.INJECT, "schedule": P.INJECT_PRESETS[0]}, P.PLAN_CHANGED),
                       ({"cmd": P.PAUSE}, None),     # while waiting: nothing to pause
                       ({"cmd": P.STEP}, P.WAITING),
                       ({"cmd": P.RUN}, P.RUN_FINISHED),
                       ({"cmd": "bogus"}, P.ERROR)):
        got = send(cmd, until)
        sent.append(cmd["cmd"])
        if cmd["cmd"] != "bogus":
            assert all(e["event"] != P.ERROR for e in got), got
    send({"cmd": P.STOP}, None)
    sent.append(P.STOP)
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert set(sent) - {"bogus"} == set(P.COMMANDS)
    assert {e["event"] for e in events} <= set(P.EVENTS)
    by_kind = {e["event"]: e for e in events}
    assert by_kind[P.SETTINGS_CHANGED]["settings"] == {"sigma": 0.7}
    # a preset is planned as the real engine plans it: early spends the whole pool in round 1
    assert by_kind[P.PLAN_CHANGED]["schedule"] == schedule_shares(P.INJECT_PRESETS[0], rounds) == [1.0, 0.0]
    assert "bogus" in by_kind[P.ERROR]["message"] and P.INJECT in by_kind[P.ERROR]["message"]
    assert [e["round"] for e in events if e["event"] == P.ROUND_FINISHED] == [0, 1, 2]


def test_the_lab_warns_once_when_the_engine_speaks_another_version(tmp_path):
    from silab.tui.state import RunState

    started = {"event": P.RUN_STARTED, "time": 1.0, "run_dir": str(tmp_path), "profile": "fake",
               "rounds": 2, "resumed_from": None}
    for protocol, warned in ((P.VERSION, False), (P.VERSION - 1, True), (None, True)):
        state = RunState(run_dir=tmp_path, engine="starting")
        line = state.apply({**started, "protocol": protocol} if protocol else started)
        assert line.error is warned and ("protocol" in line.text) is warned, line
        assert line.text.count("\n") == 0
    replayed = RunState(run_dir=tmp_path).apply(started)   # a recorded run, no engine: no warning
    assert not replayed.error


if __name__ == "__main__":
    sys.exit(FakeEngine(sys.argv[1:]).main())
