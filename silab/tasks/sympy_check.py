"""math-verify equivalence with a hard time limit, in a worker process.

sympy can run for minutes on hostile input (a power tower, a huge factorial). math-verify's own
limit is signal.alarm: whole seconds, main thread only, and blind to a loop stuck in C. So the
comparison runs in a child process (`python -m silab.tasks.sympy_check`) that answers one JSON
line per request and bounds each request with its own timer; the parent waits at most the limit
plus a grace, and kills and restarts a child that overruns. Any thread may call `equivalent`
(a lock serialises requests). Where no child can be started, the comparison runs in this process,
bounded by a SIGALRM timer in the main thread and unbounded elsewhere.

`STATS` counts what happened; `STATS.timeouts` is what a round records as `check_timeouts`.
"""
from __future__ import annotations

import functools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

TIME_LIMIT_S = 3.0  # per comparison (parse of both sides + verify)
_GRACE_S = 2.0  # the child's own timer should fire first; past this it is killed
_START_LIMIT_S = 120.0  # importing sympy on a loaded machine


@dataclass
class CheckStats:
    """Counters since the process started (read deltas around a round)."""
    checks: int = 0  # MATH comparisons asked for
    cache_hits: int = 0  # answered from the (answer, gold) cache
    sympy_calls: int = 0  # that reached math-verify
    timeouts: int = 0  # comparisons judged wrong because they ran out of time (cache hits included)
    restarts: int = 0  # worker processes killed after overrunning


STATS = CheckStats()


class _Timeout(BaseException):
    """Raised by the timer; BaseException so that math-verify's `except Exception` lets it pass."""


@functools.lru_cache(maxsize=8192)
def _parse(answer: str) -> list:
    """math-verify's reading of one answer; a gold is parsed once for all 16 samples of its prompt."""
    from math_verify import parse  # imported lazily: ~1 s of sympy

    return parse(f"\\boxed{{{answer}}}", parsing_timeout=None)


def _verify(pred: str, gold: str) -> bool:
    from math_verify import verify

    return bool(verify(_parse(gold), _parse(pred), timeout_seconds=None))


def _on_alarm(signum, frame):
    raise _Timeout()


def _verify_bounded(pred: str, gold: str, limit: float) -> bool | None:
    """_verify under a SIGALRM timer (main thread only); None on timeout."""
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return _verify(pred, gold)
    except _Timeout:
        return None
    except Exception:  # a parse that blows up is no match
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class _Worker:
    """One child process and the pipe to it."""

    def __init__(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "silab.tasks.sympy_check"], env=env, bufsize=0,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buf = b""
        if self._line(_START_LIMIT_S) != "ready":
            self.close()
            raise OSError("the math-verify worker did not start")

    def _line(self, limit: float) -> str | None:
        deadline = time.monotonic() + limit
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the child died
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def ask(self, pred: str, gold: str, limit: float) -> bool | None:
        """True/False, None if the child's timer fired; OSError if the child is stuck or gone."""
        self.proc.stdin.write((json.dumps({"pred": pred, "gold": gold, "limit": limit}) + "\n").encode())
        reply = self._line(limit + _GRACE_S)
        if reply is None:
            raise OSError("the math-verify worker " + ("overran its timer" if self.proc.poll() is None else "died"))
        return json.loads(reply)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_lock = threading.Lock()
_worker: _Worker | None = None
_no_worker = False  # set once starting a child failed: compare in process from then on


def equivalent(pred: str, gold: str, limit: float | None = None) -> bool | None:
    """math-verify's verdict on two answer strings (LaTeX or plain); None if it ran out of time."""
    global _worker, _no_worker
    limit = TIME_LIMIT_S if limit is None else limit
    with _lock:
        STATS.sympy_calls += 1
        if not _no_worker:
            try:
                if _worker is not None and _worker.proc.poll() is not None:  # died between requests
                    _worker.close()
                    _worker = None
                if _worker is None:
                    _worker = _Worker()
                return _worker.ask(pred, gold, limit)
            except OSError:
                if _worker is None:  # could not start one
                    _no_worker = True
                else:  # stuck in C past its timer, or died mid-request: the request counts as timed out
                    _worker.close()
                    _worker = None
                    STATS.restarts += 1
                    return None
    import math_verify  # noqa: F401  (its import is not the comparison's time)

    if threading.current_thread() is threading.main_thread():
        return _verify_bounded(pred, gold, limit)
    try:
        return _verify(pred, gold)
    except Exception:
        return False


def _serve():
    """The child: one JSON request per stdin line, one JSON verdict (true/false/null) per line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; we end at EOF
    import math_verify  # noqa: F401  (pay the import before saying ready)

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.write(json.dumps(_verify_bounded(req["pred"], req["gold"], req["limit"])) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
