"""The headless view of the engine's events (`silab run`, `silab sweep`): a progress line per phase
on stderr, a summary line per round on stdout. It reads the same event objects as the lab."""
from __future__ import annotations

import sys
import time

from silab import protocol as P


class ConsolePrinter:
    """Called with each event; a progress bar on a terminal, whole lines in a log."""

    def __init__(self, out=None, err=None):
        # the streams of the moment, not of import time (a test's captured stream closes)
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.tty = self.err.isatty()
        self.phase_start = time.perf_counter()

    def __call__(self, e: dict) -> None:
        kind = e["event"]
        if kind == P.PHASE_STARTED:
            self.phase_start = time.perf_counter()
        elif kind == P.PROGRESS:
            self.bar(e)
        elif kind == P.PHASE_FINISHED and self.tty:
            self.err.write("\r\033[K")
        elif kind == P.ROUND_FINISHED:
            self.out.write(summary_line(e["record"]) + "\n")
            self.out.flush()
        elif kind == P.RUN_STARTED:
            resumed = e.get("resumed_from")
            note = f" (resuming after round {resumed})" if resumed is not None else ""
            self.err.write(f"run {e['run_dir']}: profile {e['profile']}, rounds 0..{e['rounds']}{note}\n")
        elif kind in (P.LOG, P.ERROR):
            self.err.write(f"{e['message']}\n")

    def bar(self, e: dict) -> None:
        done, total = e["done"], max(e["total"], 1)
        width = 30
        filled = int(width * done / total)
        elapsed = time.perf_counter() - self.phase_start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        where = f"round {e['round']} " if e.get("round") is not None else ""
        label = P.PHASE_LABEL.get(e["phase"], e["phase"])
        line = (f"{where}{label:<18} [{'#' * filled}{'.' * (width - filled)}] "
                f"{done}/{total} {rate:,.0f}/s eta {eta:.0f}s")
        if self.tty:
            self.err.write("\r\033[K" + line)
        elif done == total or (e["phase"] == P.BUILD and done % max(total // 10, 1) == 0):
            self.err.write(line + "\n")  # logs get the long build in tenths, phases when done
        self.err.flush()


def summary_line(r: dict) -> str:
    flags = "".join(f"  {key} {r[key]}" for key in ("truncated", "check_timeouts") if r.get(key))
    at = f" (epoch {r['t']:g})" if r.get("clock") == "epoch" else ""   # the inner clock's checkpoint
    return (f"round {r['round']:>2}{at}  U_s {r['U_s']:.3f}  U_v {r['U_v']:.3f}  G {r['G']:+.3f}  "
            f"solver {r['solver_acc']:.3f}  verifier {r['verifier_acc']:.3f}  test {r['test_acc']:.3f}  "
            f"greedy {r['test_greedy_acc']:.3f}  {r['seconds']['total']:.1f}s{flags}")
