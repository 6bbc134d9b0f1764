"""`silab fit PATH [PATH …] [--model coupled|exp|power|exp2|all] [--holdout K] [--json]`

PATH is a run folder (its rounds.jsonl), a folder of runs (a sweep's: each arm) or a long CSV
(panel?, series, t, value). One panel: a table; several: their fits side by side, one column each.
--json prints one object {panel: {"models": {...}, "linearity": {...}, "rolling": {...},
"limit": {...}, "notes": [...]}} with null for anything not computable (panels of several paths
are named PATH:panel).
Bad input prints one line `silab fit: error: <file>: <what>` and returns 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from silab.errors import UsageError, UsageParser
from silab.theory.data import jsonable, load
from silab.theory.evaluate import Estimate, PanelReport, report
from silab.theory.models import MODELS

PROG = "silab fit"


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog=PROG, description="Fit the solver-verifier dynamics of a run or a CSV of "
                "curves, forecast the limit and compare models (Sun et al., arXiv 2507.00075).")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="run folder, folder of runs (a sweep), rounds.jsonl, or CSV with columns "
                   "[panel,] series (solver|verifier|gap), t, value")
    p.add_argument("--model", default="all", choices=[*MODELS, "all"],
                   help="model to fit (default: all, with a rolling-origin comparison)")
    p.add_argument("--holdout", type=int, default=0, metavar="K",
                   help="also fit on all but the last K points and report the forecast error")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:                  # --help
        return int(exc.code or 0)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        panels = load_all(args.paths)
        if args.holdout < 0:
            raise UsageError(f"{args.paths[0]}: --holdout must be >= 0, got {args.holdout}")
        for name, panel in panels.items():
            shortest = min(len(c) for c in panel.values())
            if args.holdout and shortest - args.holdout < 2:
                raise UsageError(f"{name}: --holdout {args.holdout} leaves fewer than 2 "
                                 f"points to fit ({shortest} points)")
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    models = MODELS if args.model == "all" else (args.model,)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        reports = {name: report(panel, models, args.holdout) for name, panel in panels.items()}
    units = {name: panel["solver"].unit for name, panel in panels.items()}  # what t counts
    if args.json:
        print(json.dumps({name: {**to_json(r), "unit": units[name]} for name, r in reports.items()}))
    elif len(reports) > 1:
        print(side_by_side(panels, reports))
    else:
        print("\n\n".join(format_report(name, r, args.holdout, units[name]) for name, r in reports.items()))
    return 0


def load_all(paths: list[str]) -> dict[str, dict]:
    """Panels of every path; a folder of run folders stands for its runs (a sweep's arms)."""
    expanded = []
    for path in map(Path, paths):
        runs = sorted(p for p in path.iterdir() if (p / "rounds.jsonl").is_file()) \
            if path.is_dir() and not (path / "rounds.jsonl").is_file() else []
        expanded += runs or [path]
    out = {}
    for path in expanded:
        for name, panel in load(path).items():
            label = name if len(expanded) == 1 else (path.name if name == "run" else f"{path.name}:{name}")
            out[label] = panel
    return out


def side_by_side(panels: dict[str, dict], reports: dict[str, PanelReport]) -> str:
    """One column per panel: the best model, the shared-rate test, the coupled fit, the limits."""
    from silab.theory.summary import best_limits

    rows: dict[str, list[str]] = {}

    def add(label: str, cell: str) -> None:
        rows.setdefault(label, []).append(cell)

    for name, r in reports.items():
        add("t counts (rates per)", panels[name]["solver"].unit)
        add("points (solver)", str(r.n_points.get("solver", 0)))
        best = r.rolling.best if r.rolling else None
        add("best forecast (rolling MSE)", f"{best} ({_g(r.rolling.mse[best], 3)})" if best else "-")
        sh = r.shared_rate
        add("one shared rate", "-" if sh is None else
            f"{'rejected' if sh.p < 0.05 else 'kept'} (p {sh.p:.2g})")
        c = r.fits.get("coupled")
        for key, label in (("lambda", "coupled λ"), ("U_s_inf", "coupled U_s∞"),
                           ("U_v_inf", "coupled U_v∞"), ("G_inf", "coupled G∞"),
                           ("alpha_over_beta", "coupled α/β")):
            add(label, _interval(Estimate.of(c, key)) if c and key in c.params else "-")
        add("coupled R² s/v/g", "/".join(_g(c.r2.get(s), 3) for s in ("solver", "verifier", "gap"))
            if c else "-")
        limits, used, notes = (best_limits(best, r.fits[best], panels[name]) if best
                               else ({}, {}, {}))
        for key, label in (("U_s", "best U_s∞"), ("U_v", "best U_v∞"), ("accuracy", "best accuracy∞")):
            e = limits.get(key)
            add(label, "-" if e is None or key in notes and "not identified" in notes[key]
                else f"{_interval(e)} {used[key]}")
    width = max(len(k) for k in rows) + 2
    cols = [max(len(name), *(len(v[i]) for v in rows.values())) + 2
            for i, name in enumerate(reports)]
    lines = [" " * width + "".join(f"{n:<{w}}" for n, w in zip(reports, cols))]
    lines += [f"{label:<{width}}" + "".join(f"{v:<{w}}" for v, w in zip(values, cols))
              for label, values in rows.items()]
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------------------------------------
# JSON



def _estimate(e: Estimate | None):
    return None if e is None else {"value": e.value, "stderr": e.stderr, "lo": e.lo, "hi": e.hi}


def to_json(r: PanelReport) -> dict:
    models = {}
    for m, f in r.fits.items():
        h = r.heldout.get(m)
        models[m] = {"params": f.params, "stderr": f.stderr, "ci": f.ci, "r2": f.r2,
                     "heldout_mse": h.mse if h else None,
                     "heldout_by_series": h.by_series if h else None,
                     "converged": f.converged, "message": f.message}
    lin = r.linearity
    out = {
        "models": models,
        "linearity": ({"slope": lin.slope, "intercept": lin.intercept, "r2": lin.r2, "n": lin.n}
                      if lin else {"slope": None, "intercept": None, "r2": None, "n": 0}),
        "shared_rate": (None if r.shared_rate is None else
                        {k: getattr(r.shared_rate, k) for k in
                         ("lambda_shared", "lambda_solver", "lambda_verifier", "F", "p", "dof")}),
        "rolling": (None if r.rolling is None else
                    {"horizon": r.rolling.horizon, "origins": r.rolling.origins,
                     "mse": r.rolling.mse, "n_forecasts": r.rolling.n_forecasts,
                     "n_flagged": r.rolling.n_flagged, "best": r.rolling.best}),
        "limit": {"U_s_inf": _estimate(r.limit.U_s_inf),
                  "saturation_t": _estimate(r.limit.saturation_t),
                  "accuracy_inf": _estimate(r.limit.accuracy_inf),
                  "by_first_k": [{"k": f.k, "U_s_inf": _estimate(f.U_s_inf),
                                  "saturation_t": _estimate(f.saturation_t)}
                                 for f in r.limit.by_first_k],
                  "message": r.limit.message},
        "n_points": r.n_points,
        "notes": r.notes,
    }
    return jsonable(out)


# ---------------------------------------------------------------------------------------------
# Table

def _g(x, digits=4) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}"


def _interval(e: Estimate | None) -> str:
    if e is None:
        return "-"
    return f"{_g(e.value)} [{_g(e.lo)}, {_g(e.hi)}]"


def format_report(name: str, r: PanelReport, holdout: int, unit: str = "round") -> str:
    lines = [f"== {name} ==  " + ", ".join(f"{s} {n}" for s, n in r.n_points.items()) + " points"
             + f";  t in {unit}s, rates per {unit}"]
    head = f"{'model':<8} {'conv':<5}" + "".join(f"{'R² ' + s:>13}"
                                                 for s in ("solver", "verifier", "gap"))
    if holdout:
        head += f"  held-out MSE (last {holdout})"
    lines.append(head)
    problems = []
    for m, f in r.fits.items():
        row = f"{m:<8} {'yes' if f.converged else 'NO':<5}" + "".join(
            f"{_g(f.r2.get(s)):>13}" for s in ("solver", "verifier", "gap"))
        if holdout:
            h = r.heldout[m]
            row += f"  {_g(h.mse, 3)}"
        lines.append(row)
        if f.message:
            problems.append(f"  {m}: {f.message}")
    lines += problems
    shown = [m for m in r.fits if m == "coupled" or len(r.fits) == 1]
    for m in shown:
        f = r.fits[m]
        if not f.params:
            continue
        lines.append(f"\n{m} parameters (estimate ± stderr, 95 % interval)")
        for k, v in f.params.items():
            lo, hi = f.ci[k]
            label = f"{k} per {unit}" if k == "lambda" else k
            lines.append(f"  {label:<22} {_g(v):>10} ± {_g(f.stderr[k], 2):<9} [{_g(lo)}, {_g(hi)}]")
    lin = r.linearity
    if lin:
        lines.append(f"\nlinearity   dG/dt = {lin.slope:.4g} G + {lin.intercept:.4g}   "
                     f"R² {lin.r2:.3f} over {lin.n} intervals (the model says slope = -lambda)")
    sh = r.shared_rate
    if sh:
        lines.append(f"shared rate coupled lambda {sh.lambda_shared:.4g} vs exp's solver "
                     f"{sh.lambda_solver:.4g}, verifier {sh.lambda_verifier:.4g}:  F = {sh.F:.3g} "
                     f"(weighted; 1, {sh.dof:.3g} dof), p = {sh.p:.2g}" + ("  (the data want separate rates)" if sh.p < 0.05 else ""))
    lim = r.limit
    lines.append(f"limit       U_s_inf {_interval(lim.U_s_inf)};  95 % of the way by "
                 f"t = {_interval(lim.saturation_t)} {unit}s")
    if lim.accuracy_inf:
        lines.append(f"            accuracy limit {_interval(lim.accuracy_inf)}")
    if lim.by_first_k:
        ks = "  ".join(f"{f.k}: {_g(f.U_s_inf.value, 3) if f.U_s_inf else '-'}"
                       for f in lim.by_first_k)
        lines.append(f"            U_s_inf forecast from the first k points (k: value): {ks}")
    if lim.message:
        lines.append(f"            ({lim.message})")
    roll = r.rolling
    if roll:
        scores = ", ".join(f"{m} {_g(v, 3)}" + (" (best)" if m == roll.best else "") +
                           (f" [{roll.n_flagged[m]} flagged]" if roll.n_flagged[m] else "")
                           for m, v in roll.mse.items())
        lines.append(f"rolling     {roll.horizon}-step-ahead MSE over {len(roll.origins)} origins "
                     f"(t = {roll.origins[0]:g}..{roll.origins[-1]:g}): {scores}")
    for note in r.notes:
        lines.append(f"note        {note}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
