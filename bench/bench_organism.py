"""The organism's figures: build time, round time and the self-improvement dynamics, with ablations.

    python bench/bench_organism.py [--rounds 10] [--skip-build] [--out logs/bench-organism]

Builds the tiny organism from scratch in a fresh cache (timed), then runs the default profile for
10 rounds three ways: judged Best-of-N (the method), likelihood-only picks (sigma = 0: the judge
is ignored) and judged picks without judge rehearsal. Targets (issue 2, 2 CPU cores): build <= 3 min,
a round <= 30 s, 10 rounds <= 5 min; test accuracy +10 points; U_s exponential R^2 >= 0.9 without
saturating by round 3; G > 0 through round 5.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from silab.config import load_profile
from silab.engine import session
from silab.engine.organism import ensure_organism
from silab.theory import Series, fit_curve

ARMS = {
    "judged": [],
    "likelihood-only": ["verify.sigma=0.0"],
    "no-rehearsal": ["train.judge_rehearsal=false"],
}


def run(profile, run_dir: Path) -> tuple[list[dict], float]:
    start = time.perf_counter()
    loop = session.new_run(profile, str(run_dir), lambda e: None)
    records = session.run_rounds(loop, resumed=False)
    return records, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--skip-build", action="store_true", help="use the cached organism")
    parser.add_argument("--out", default=None, help="keep the run folders here (default: a temp dir)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="silab-bench-"))

    cache = ""
    if not args.skip_build:
        cache = str(out / "cache")
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        ensure_organism("tiny", cache)
        build = time.perf_counter() - start
        print(f"build organism (tiny, from scratch): {build:.1f} s   (target <= 180 s: {build <= 180})")

    results = {}
    for arm, overrides in ARMS.items():
        profile = load_profile("tiny", [f"rounds={args.rounds}", f"model.cache_dir={cache}", *overrides])
        shutil.rmtree(out / arm, ignore_errors=True)
        records, wall = run(profile, out / arm)
        results[arm] = records
        per_round = [r["seconds"]["total"] for r in records]
        print(f"\n== {arm} ({' '.join(overrides) or 'the method'}): {len(records)} rounds in {wall:.1f} s "
              f"(incl. model load), max round {max(per_round):.1f} s, mean {np.mean(per_round):.1f} s")
        print(" t    U_s    U_v      G  solver verifier  test greedy  judgeAUC")
        for r in records:
            auc = f"{r['judge_auc']:.3f}" if r["judge_auc"] is not None else "  -  "
            print(f"{r['round']:2d} {r['U_s']:6.3f} {r['U_v']:6.3f} {r['G']:+6.3f}  {r['solver_acc']:.3f}   "
                  f"{r['verifier_acc']:.3f}  {r['test_acc']:.3f}  {r['test_greedy_acc']:.3f}   {auc}")

    judged = results["judged"]
    t = np.array([r["round"] for r in judged], float)
    us = np.array([r["U_s"] for r in judged])
    fit = fit_curve("exp", Series(t, us))
    lam = fit.params.get("lambda", float("nan"))
    share_by_3 = (us[0] - us[min(3, len(us) - 1)]) / max(us[0] - us[-1], 1e-12)
    rise = judged[-1]["test_acc"] - judged[0]["test_acc"]
    g_pos = all(r["G"] > 0 for r in judged[:6])
    per_round = max(r["seconds"]["total"] for r in judged)
    total = sum(r["seconds"]["total"] for r in judged)
    print("\n== targets (judged arm)")
    print(f"one round (max)          {per_round:6.1f} s      target <= 30 s   {per_round <= 30}")
    print(f"all rounds               {total:6.1f} s      target <= 300 s  {total <= 300}")
    print(f"test accuracy rise       {rise * 100:+6.1f} points target >= +10  {rise >= 0.10}")
    print(f"U_s exp fit R^2          {fit.r2['y']:6.3f}  "
          f"lambda {lam:.3f}/round  target >= 0.9")
    print(f"share of U_s's fall done by round 3: {share_by_3:.2f} (saturated would be ~1)")
    print(f"G > 0 through round 5    {g_pos}")
    print("\n== ablation: final test accuracy (ratio to round 0)")
    base = judged[0]["test_acc"]
    for arm, records in results.items():
        final = records[-1]["test_acc"]
        print(f"{arm:<16} {base:.3f} -> {final:.3f}   x{final / base:.2f}   "
              f"final verifier acc {records[-1]['verifier_acc']:.3f}  judge AUC {records[-1]['judge_auc'] or 0:.3f}")
    print(f"\nrun folders: {out}")


if __name__ == "__main__":
    main()
