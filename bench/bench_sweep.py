"""The cross-improvement sweep on the tiny organism, end to end:
`python bench/bench_sweep.py [--profile tiny] [--rounds T] [--out DIR]`.

Runs `silab sweep --schedules early,uniform,late --seeds 1` (plus the none control arm the sweep
always runs) as a subprocess, then prints the wall time, the sweep's table and theory view, and the
pass@k trend of one arm round by round. Target (the issue's): under 15 minutes on 2 CPU cores.
The load average before and after is printed: on a shared machine other processes slow it down.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from silab.sweep import render
from silab.runs.store import read_records

TARGET_S = 15 * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--rounds", type=int, help="default: the profile's (tiny: 10)")
    ap.add_argument("--schedules", default="early,uniform,late")
    ap.add_argument("--arm", default="none", help="arm whose pass@k trend is printed per round")
    ap.add_argument("--out", help="sweep folder (default: a new temporary folder, kept)")
    args = ap.parse_args()

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-sweep-")) / "sweep"
    cmd = [sys.executable, "-m", "silab.cli", "sweep", "--profile", args.profile, "--schedules", args.schedules,
           "--seeds", "1", "--out", str(out), "--json"]
    if args.rounds is not None:
        cmd += ["--rounds", str(args.rounds)]
    load_before = os.getloadavg()
    print(f"$ {' '.join(cmd[1:])}", flush=True)
    print(f"cores: {os.cpu_count()}, load average before: {' '.join(f'{x:.2f}' for x in load_before)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    if proc.returncode != 0:
        print(f"sweep failed with exit code {proc.returncode} after {wall:.0f} s", file=sys.stderr)
        return proc.returncode
    result = json.loads(proc.stdout)

    print(f"\nwall time: {wall:.0f} s ({wall / 60:.1f} min), target < {TARGET_S // 60} min: "
          f"{'met' if wall < TARGET_S else 'NOT met'}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)} "
          "(1, 5, 15 min; above the core count means other work shared the CPU)")
    ran = 0
    for name, arm in result["arms"].items():
        records = read_records(Path(arm["runs"][0]))
        events = [json.loads(line) for line in (Path(arm["runs"][0]) / "events.jsonl").read_text().splitlines()]
        run_here = {e["round"] for e in events if e["event"] == "round_finished"}
        ran += len(run_here)
        seconds = sum(r["seconds"]["total"] for r in records if r["round"] in run_here)
        print(f"  arm {name:<8} rounds run {len(run_here):>2} of {len(records)} "
              f"(the rest copied from an arm with the same data so far), {seconds:.0f} s in rounds")
    print(f"  {ran} rounds run in all, {wall / max(ran, 1):.1f} s per round including model loads\n")
    print(render(result))

    arm = result["arms"].get(args.arm)
    if arm is None:
        print(f"\nno arm {args.arm!r} in the sweep", file=sys.stderr)
        return 1
    records = read_records(Path(arm["runs"][0]))
    if not all("pass_at_k" in r for r in records):
        print(f"\npass@k: not recorded (set sampling.pass_k in the profile)")
        return 0
    ks = list(records[0]["pass_at_k"])
    print(f"\npass@k per round, arm {args.arm} (test split, n = {ks[-1]} samples per item):")
    print("round  " + "  ".join(f"{'k=' + k:>7}" for k in ks) + "  test_acc  greedy")
    for r in records:
        print(f"{r['round']:>5}  " + "  ".join(f"{r['pass_at_k'][k]:>7.3f}" for k in ks)
              + f"  {r['test_acc']:>8.3f}  {r['test_greedy_acc']:>6.3f}")
    first, last = records[0]["pass_at_k"], records[-1]["pass_at_k"]
    print("change " + "  ".join(f"{last[k] - first[k]:>+7.3f}" for k in ks)
          + f"   (round 0 -> round {records[-1]['round']})")
    print(f"\nrun folders: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
