"""Both clocks of the paper on the organism, for the same budget of training steps, side by side.

    python bench/bench_clocks.py [--seed 0] [--cache DIR] [--out DIR]

The outer clock (`tiny`): 10 self-improvement rounds, each re-sampling, re-picking and training one
epoch on the new picks. The inner clock (`tiny_epochs`, the protocol of the paper's figures): round
0's picks are fixed and the run is one continuous fine-tune on them, measured every half epoch for
10 epochs (20 checkpoints). Every round samples, judges, picks and measures the same way on both
clocks, so U_s, U_v and G mean the same. Prints the training steps each clock spent, the coupled
fit's λ with its 95 % interval (per round, per epoch, and per 100 training steps so the two can be
compared), the fits' R², the shared-rate F test, test accuracy, and both curves as a table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from silab.config import load_profile
from silab.engine import session
from silab.engine.loop import manifest
from silab.engine.organism import ensure_organism
from silab.theory import Estimate, load, report

CLOCKS = {"outer (rounds)": "tiny", "inner (epochs)": "tiny_epochs"}


def run(name: str, overrides: list[str], run_dir: Path) -> tuple[list[dict], float]:
    profile = load_profile(name, overrides)
    start = time.perf_counter()
    loop = session.run_rounds(session.new_run(profile, str(run_dir)), lambda e: None)
    records = loop.run.records()
    loop.backend.close()
    return records, time.perf_counter() - start


def summarize(records: list[dict], run_dir: Path) -> dict:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        panel = load(run_dir)["run"]
        r = report(panel, ("coupled", "exp"), with_rolling=False)
    coupled, exp, unit = r.fits["coupled"], r.fits["exp"], panel["solver"].unit
    steps = sum(rec["train"]["steps"] for rec in records[1:])
    span = records[-1]["t"]
    lam = Estimate.of(coupled, "lambda")
    per_100 = 100 * span / steps    # clock units per 100 steps
    return {"unit": unit, "steps": steps, "span": span, "lambda": lam, "per_100": per_100,
            "coupled_r2": coupled.r2, "exp_r2": exp.r2, "converged": coupled.converged,
            "message": coupled.message, "shared": r.shared_rate,
            "acc": (records[0]["test_acc"], records[-1]["test_acc"], max(x["test_acc"] for x in records)),
            "greedy": (records[0]["test_greedy_acc"], records[-1]["test_greedy_acc"])}


def interval(e: Estimate, scale: float = 1.0) -> str:
    return f"{e.value * scale:.3f} [{e.lo * scale:.3f}, {e.hi * scale:.3f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="", help="organism cache (default: the user's cache dir)")
    ap.add_argument("--out", default="", help="where the two runs go (default: a temporary folder)")
    args = ap.parse_args()
    overrides = [f"seed={args.seed}", f"model.cache_dir={args.cache}"]
    info = manifest(load_profile("tiny", overrides), sys.argv)
    print(f"silab {info['silab']} ({info['git_commit']}), python {info['python']}, torch {info['torch']}, "
          f"transformers {info['transformers']}, peft {info['peft']}; seed {args.seed}")
    start = time.perf_counter()
    ensure_organism("tiny", args.cache)
    print(f"organism ready in {time.perf_counter() - start:.1f} s")
    out = Path(args.out or tempfile.mkdtemp(prefix="silab-clocks-"))
    results, records = {}, {}
    for label, name in CLOCKS.items():
        records[label], seconds = run(name, overrides, out / name)
        results[label] = summarize(records[label], out / name)
        print(f"{label}: {len(records[label])} measurements in {seconds:.0f} s -> {out / name}")

    cols = list(CLOCKS)
    rows = [("profile", [CLOCKS[c] for c in cols]),
            ("t counts", [results[c]["unit"] for c in cols]),
            ("training steps (total)", [str(results[c]["steps"]) for c in cols]),
            ("span", [f"{results[c]['span']:g} {results[c]['unit']}s" for c in cols]),
            ("coupled λ per unit [95 %]", [interval(results[c]["lambda"]) for c in cols]),
            ("coupled λ per 100 steps", [interval(results[c]["lambda"], results[c]["per_100"]) for c in cols]),
            ("coupled converged", [("yes" if results[c]["converged"] else f"NO: {results[c]['message']}")[:40]
                                   for c in cols]),
            ("coupled R² s / v / g", ["/".join(f"{results[c]['coupled_r2'].get(s, float('nan')):.3f}"
                                               for s in ("solver", "verifier", "gap")) for c in cols]),
            ("exp R² s / v / g", ["/".join(f"{results[c]['exp_r2'].get(s, float('nan')):.3f}"
                                           for s in ("solver", "verifier", "gap")) for c in cols]),
            ("exp λ solver / verifier", [f"{results[c]['shared'].lambda_solver:.3f} / "
                                         f"{results[c]['shared'].lambda_verifier:.3f}" if results[c]["shared"]
                                         else "-" for c in cols]),
            ("one shared rate", [(f"{'rejected' if s.p < 0.05 else 'kept'} (F {s.F:.3g}, p {s.p:.2g})"
                                  if (s := results[c]["shared"]) else "-") for c in cols]),
            ("test acc first → last (best)", ["{:.3f} → {:.3f} ({:.3f})".format(*results[c]["acc"]) for c in cols]),
            ("greedy acc first → last", ["{:.3f} → {:.3f}".format(*results[c]["greedy"]) for c in cols])]
    print("\n| | " + " | ".join(cols) + " |\n| --- | " + " | ".join("---" for _ in cols) + " |")
    for label, values in rows:
        print(f"| {label} | " + " | ".join(values) + " |")

    print("\nThe two curves (U_s, U_v, G in nats; acc = sampled test accuracy):\n")
    print("| clock | t | steps so far | U_s | U_v | G | test acc | verifier acc |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label in cols:
        done = 0
        for rec in records[label]:
            done += rec["train"]["steps"] if rec["train"] else 0
            print(f"| {CLOCKS[label]} | {rec['t']:g} | {done} | {rec['U_s']:.3f} | {rec['U_v']:.3f} | {rec['G']:.3f} "
                  f"| {rec['test_acc']:.3f} | {rec['verifier_acc']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
