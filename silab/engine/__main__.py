"""The interactive engine process that the lab UI drives: `python -m silab.engine RUN_DIR ...`.

Events go out on stdout as JSON lines (the same objects as events.jsonl; anything else a library
prints is sent to stderr), commands come in on stdin as JSON lines:

    {"cmd": "step"}    one round, then wait          {"cmd": "run"}   rounds up to the profile's
    {"cmd": "pause"}   stop after the current phase  {"cmd": "stop"}  exit after the current phase
    {"cmd": "set", "sigma": 0.6, "n_samples": 8, "lr": 1e-4}     settings for the next round
    {"cmd": "set", "rounds": 15}                                  extend (or shorten) the run
    {"cmd": "inject", "schedule": "early" | "uniform" | "late" | [eta_1, ...]}

The loop runs in the main thread (vLLM installs signal handlers there); a reader thread turns
stdin into commands. A round paused before its last phase starts again from its beginning; a pause
asked for during the last phase (evaluate) lets the round finish and be saved first.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import traceback

from silab.config import load_profile
from silab.engine import session
from silab.engine.loop import Control, Paused, RoundLoop, Stopped, plan_shares, record_event
from silab.errors import UsageError
from silab.protocol import (COMMANDS, ERROR, INJECT, PAUSE, PAUSED, PLAN_CHANGED, RUN, RUN_FINISHED, SET,
                            SETTINGS, SETTINGS_CHANGED, STEP, STOP, WAITING)


def read_commands(commands: "queue.Queue[dict]", control: Control) -> None:
    """Stdin reader: pause and stop take effect at the next phase boundary, the rest queue up."""
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
        except json.JSONDecodeError:
            cmd = {"cmd": "invalid", "line": line.strip()}
        if cmd.get("cmd") == PAUSE:
            control.pause_requested = True
        elif cmd.get("cmd") == STOP:
            control.stop_requested = True
        commands.put(cmd)
    control.stop_requested = True
    commands.put({"cmd": STOP})


class Engine:
    def __init__(self, loop: RoundLoop, control: Control, commands: "queue.Queue[dict]"):
        self.loop, self.control, self.commands = loop, control, commands

    def apply(self, cmd: dict) -> str | None:
        """Handle one command; returns STEP, RUN or STOP when it asks for rounds or exit."""
        kind = cmd.get("cmd")
        if kind in (STEP, RUN, STOP):
            return kind
        if kind == PAUSE:
            return None
        try:
            if kind == SET:
                unknown = set(cmd) - {"cmd", *SETTINGS}
                if unknown:
                    raise UsageError(f"set: unknown setting(s) {', '.join(sorted(unknown))}")
                changes = {k: cmd[k] for k in SETTINGS if k in cmd}
                self.loop.update([f"{SETTINGS[k].key}={json.dumps(v)}" for k, v in changes.items()], "set")
                self.loop.emit(SETTINGS_CHANGED, settings=changes, from_round=self.loop.next_round)
            elif kind == INJECT:
                profile = self.loop.update([f"external.schedule={json.dumps(cmd.get('schedule'))}"], "inject")
                self.loop.emit(PLAN_CHANGED, schedule=plan_shares(profile))
            else:
                raise UsageError(f"unknown command {cmd!r} (known: {', '.join(COMMANDS)})")
        except UsageError as e:
            self.loop.emit(ERROR, message=str(e), traceback="")
        return None

    def serve(self) -> None:
        mode = "wait"
        while True:
            if mode == RUN and self.loop.next_round > self.loop.p.rounds:
                mode = "wait"
            if mode == "wait":
                self.loop.emit(WAITING, next_round=self.loop.next_round)
                action = None
                while action is None:
                    action = self.apply(self.commands.get())
                if action == STOP:
                    return
                mode = action
            self.control.pause_requested = False
            try:
                self.loop.run_round()
                if mode == STEP:
                    mode = "wait"
                elif self.control.pause_requested:  # asked during the round's last phase
                    self.loop.emit(PAUSED, next_round=self.loop.next_round)
                    mode = "wait"
            except Paused:  # the loop went back to its last saved round
                self.loop.emit(PAUSED, next_round=self.loop.next_round)
                mode = "wait"
            except Stopped:
                return
            if self.control.stop_requested:
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m silab.engine", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="the run folder (resumed unless --new is given)")
    parser.add_argument("--new", metavar="PROFILE", nargs="?", const="tiny",
                        help="start a new run in RUN_DIR from this profile (name or path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--nice", type=int, default=0,
                        help="lower the engine's CPU priority (the lab does, so keys stay quick on a busy CPU)")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)

    # stdout carries events only: keep a private handle, send fd 1 (library chatter) to stderr
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    lock = threading.Lock()

    def emit(event: dict) -> None:
        with lock:
            events.write(json.dumps(event) + "\n")

    control, commands = Control(), queue.Queue()
    try:
        if args.new is not None:
            start = session.new_run(load_profile(args.new, args.overrides), args.run_dir)
        else:
            start = session.resume_run(args.run_dir)
    except UsageError as e:
        emit({"event": ERROR, "message": str(e), "traceback": "", "fatal": True})
        print(f"silab engine: error: {e}", file=sys.stderr)
        return 2
    threading.Thread(target=read_commands, args=(commands, control), daemon=True).start()
    try:
        loop = start.loop(emit, control)
        Engine(loop, control, commands).serve()
    except Exception as exc:  # the UI shows it and can restart us from the last completed round
        record_event(start.run, emit, ERROR, message=f"{type(exc).__name__}: {exc}",
                     traceback=traceback.format_exc(), fatal=True)
        return 1
    loop.emit(RUN_FINISHED, rounds_completed=len(loop.run.completed()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
