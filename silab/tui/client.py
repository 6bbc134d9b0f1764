"""The engine subprocess, seen from the UI: events in on stdout, commands out on stdin.

The engine runs in its own process so a CUDA error, an out-of-memory kill or a hung kernel can
never freeze or take down the UI. This module is plain asyncio (no Textual) so it can be tested
alone; the app hands it callbacks that post messages.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from silab.protocol import STOP

# stdout lines can carry a whole round record; asyncio's default 64 KiB limit is too tight.
_LINE_LIMIT = 16 * 1024 * 1024


def engine_argv(run_dir: Path, new_profile: str | None = None,
                overrides: Sequence[str] = ()) -> list[str]:
    """The command that starts (with new_profile) or resumes (without) the engine on run_dir."""
    argv = [sys.executable, "-m", "silab.engine", str(run_dir), "--nice", "5"]
    if new_profile is not None:
        argv += ["--new", new_profile]
        for text in overrides:
            argv += ["--set", text]
    return argv


class EngineClient:
    """One engine process. Create, `await start()`, `await send({...})`, `await stop()`.

    on_event(dict) gets each JSON stdout line, on_output(str) each stderr line (and any stdout
    line that is not a JSON object), on_exit(returncode) once, after both streams are drained.
    """

    def __init__(self, argv: Sequence[str], *,
                 on_event: Callable[[dict[str, Any]], None],
                 on_output: Callable[[str], None],
                 on_exit: Callable[[int | None], None],
                 env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.argv = list(argv)
        self._on_event, self._on_output, self._on_exit = on_event, on_output, on_exit
        self._env = env
        self._cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._watch: asyncio.Task | None = None
        self._exited = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.returncode is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        """Spawn the engine; raises OSError when it cannot be started at all."""
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=self._cwd, limit=_LINE_LIMIT,
            # Own session: a terminal hang-up or Ctrl+C reaches the UI, which stops the engine
            # between phases instead of the signal killing it mid-write.
            start_new_session=True)
        self._watch = asyncio.create_task(self._pump())

    async def _read_stdout(self) -> None:
        assert self.process and self.process.stdout
        while True:
            try:
                raw = await self.process.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):  # a line over the limit: skip it
                self._on_output("(engine wrote an over-long stdout line; skipped)")
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            if isinstance(event, dict) and "event" in event:
                self._on_event(event)
            else:
                self._on_output(line)

    async def _read_stderr(self) -> None:
        assert self.process and self.process.stderr
        while True:
            raw = await self.process.stderr.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stderr_tail.append(line)
            self._on_output(line)

    async def _pump(self) -> None:
        assert self.process
        try:
            await asyncio.gather(self._read_stdout(), self._read_stderr())
        except asyncio.CancelledError:
            self.detach()  # the UI's loop is closing: never wait on the engine from here
            raise
        self.returncode = await self.process.wait()
        self._exited.set()
        self._on_exit(self.returncode)

    async def send(self, command: dict[str, Any]) -> bool:
        """Write one command line; False when the engine is gone (the exit callback says why)."""
        if not self.alive or self.process is None or self.process.stdin is None:
            return False
        try:
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return False
        return True

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to end (and its streams to drain); None on timeout."""
        try:
            await asyncio.wait_for(self._exited.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.returncode

    async def stop(self, grace: float = 10.0) -> int | None:
        """Ask the engine to stop after its current phase; terminate, then kill, if it lingers.

        Completed rounds are written atomically, so cutting a phase short loses nothing saved.
        """
        if self.process is None:
            return None
        if self.alive:
            await self.send({"cmd": STOP})
            self._close_stdin()
            if await self.wait(grace) is None:
                self._signal("terminate")
                if await self.wait(3.0) is None:
                    self._signal("kill")
        return await self.wait(5.0)

    def detach(self) -> None:
        """Close the engine's stdin without waiting: EOF asks it to stop after its phase."""
        self._close_stdin()

    def kill(self) -> None:
        """Last resort, for a UI that is exiting without an event loop to wait on."""
        self._signal("kill")

    def _close_stdin(self) -> None:
        if self.process and self.process.stdin and not self.process.stdin.is_closing():
            try:
                self.process.stdin.close()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass

    def _signal(self, how: str) -> None:
        if self.process is None or self.returncode is not None:
            return
        try:
            getattr(self.process, how)()
        except ProcessLookupError:
            pass
