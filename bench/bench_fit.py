"""How long the theory takes on one core: `python bench/bench_fit.py [--repeat N]`.

Target: all four models fitted to a 20-point run, with held-out and rolling-origin comparisons,
in < 2 s; `fit_run` (the UI's call after each round) in < 0.5 s. Each figure is also given as a
ratio to a baseline measured in the same process: a plain scipy `curve_fit` of one exponential
per series (solver, verifier, gap), the least a fitting tool has to do. (These targets were once
timed assertions in the test suite; on a shared machine a timing is a figure to read, not a test.)
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")                # one core: set before numpy loads BLAS

import argparse                                    # noqa: E402
import statistics                                  # noqa: E402
import time                                        # noqa: E402
import warnings                                    # noqa: E402
from pathlib import Path                           # noqa: E402

import numpy as np                                 # noqa: E402
from scipy.optimize import curve_fit               # noqa: E402

from silab.theory import MODELS, Series, fit, fit_run, load, report   # noqa: E402

PHI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
    "sun2025_phi4mini_uncertainty_digitized.csv"


def synthetic_run(n=20, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(float(n))
    s = 0.2 + 0.8 * np.exp(-0.3 * t) + 0.01 * rng.standard_normal(n)
    v = 0.12 + 0.3 * np.exp(-0.3 * t) + 0.01 * rng.standard_normal(n)
    acc = 0.8 - 0.5 * np.exp(-0.3 * t) + 0.01 * rng.standard_normal(n)
    records = [{"round": i, "U_s": s[i], "U_v": v[i], "G": s[i] - v[i], "test_acc": acc[i]}
               for i in range(n)]
    panel = {"solver": Series(t, s), "verifier": Series(t, v), "gap": Series(t, s - v)}
    return panel, records


def baseline(panel):
    """One exponential per series with scipy's curve_fit, from a sensible start."""
    for c in (panel[s] for s in ("solver", "verifier", "gap")):
        curve_fit(lambda t, y_inf, a, lam: y_inf + a * np.exp(-lam * t), c.t, c.y,
                  p0=(c.y[-1], c.y[0] - c.y[-1], 1.0 / np.ptp(c.t)), maxfev=10000)


def timed(fn, repeat):
    fn()                                           # warm caches and imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    panel, records = synthetic_run()
    base = timed(lambda: baseline(panel), max(args.repeat, 20))
    rows = [("baseline: curve_fit, 1 exp x 3 series (20 pts)", base)]
    for m in MODELS:
        rows.append((f"fit {m} (20 pts)", timed(lambda m=m: fit(m, panel), args.repeat)))
    rows.append(("all models + holdout 5 + rolling (20 pts)",
                 timed(lambda: report(panel, MODELS, holdout=5), args.repeat)))
    for n in (10, 20):
        rows.append((f"fit_run, the UI call ({n} rounds)",
                     timed(lambda n=n: fit_run(records[:n]), args.repeat)))
    if PHI.is_file():
        phi = load(PHI)["math_qe"]
        rows.append(("all models + holdout 5 + rolling (Phi-4-mini math_qe)",
                     timed(lambda: report(phi, MODELS, holdout=5), args.repeat)))
    print(f"{'what':<56} {'median s':>10} {'x baseline':>11}")
    for what, sec in rows:
        print(f"{what:<56} {sec:>10.4f} {sec / base:>11.1f}")
    full = rows[len(MODELS) + 1][1]
    print(f"\ntarget: all models with rolling < 2 s: {'ok' if full < 2 else 'MISSED'} ({full:.2f} s); "
          f"fit_run < 0.5 s: {'ok' if max(r[1] for r in rows if r[0].startswith('fit_run')) < 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
