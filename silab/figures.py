"""`silab plot RUN [RUN …] -o FILE.{png,pdf,svg}`: the paper's panels with matplotlib.

    U_s and U_v per round, the coupled fit (Prop. 3.1) drawn on to its forecast limit (dashed) and
    the limit itself (dotted); the gap G with the fit's G = U_s − U_v; test / solver / verifier
    accuracy; pass@k against k at the first and last round. Several runs share the axes, one colour
    each, named in the legend. The file is written to a temporary name and renamed, so a failed
    plot leaves nothing half-written.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from silab.errors import UsageError
from silab.runs import expand_runs, read_records, run_labels

FORMATS = ("png", "pdf", "svg")
ACCURACIES = (("test_acc", "test", "-"), ("solver_acc", "solver", "--"),
              ("verifier_acc", "verifier", ":"))


def check_output(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"{path}: the figure's name must end in .png, .pdf or .svg")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: no folder {path.parent} to write the figure into")
    return fmt


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["round"], float(r[key])) for r in records
           if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return (np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts])) if pts \
        else (np.empty(0), np.empty(0))


def plot_runs(paths: list[str | Path], out: str | Path, dpi: int = 150) -> Path:
    """Draw the panels of these runs (a sweep's folder: its arms) into `out`; returns the path."""
    out = Path(out)
    fmt = check_output(out)
    runs = expand_runs(paths)
    records = [read_records(p) for p in runs]
    for path, recs in zip(runs, records):
        if not recs:
            raise UsageError(f"{path}: the run has no completed round to plot")

    import matplotlib
    matplotlib.use("Agg")          # files only: no display needed
    import matplotlib.pyplot as plt

    from silab.theory.summary import fit_run

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), layout="constrained")
    (ax_u, ax_g), (ax_acc, ax_k) = axes
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, recs) in enumerate(zip(run_labels(runs), records)):
        c = colours[i % len(colours)]
        name = label if len(runs) > 1 else ""
        fit = fit_run(recs)
        last = recs[-1]["round"]
        lam = fit.params["lambda"].value if fit.ok else None
        horizon = max(last * 1.5, min(3.0 / lam, 4 * max(last, 1))) if lam and lam > 0 else last
        t = np.linspace(0, horizon, 200)
        curves = fit.predict(t) if fit.ok else {}
        for key, series, marker, ax in (("U_s", "solver", "o", ax_u), ("U_v", "verifier", "s", ax_u),
                                        ("G", "gap", "^", ax_g)):
            x, y = _series(recs, key)
            first = key == "U_s" or (key == "G" and len(runs) == 1)
            ax.plot(x, y, marker, color=c, ms=4,
                    label=(name or key) if first else (None if name else key))
            if series in curves:
                ax.plot(t, curves[series], "-", color=c, lw=1, alpha=0.8)
                ax.axhline(fit.params[f"{key}_inf"].value, color=c, ls=":", lw=0.8)
        for key, what, style in ACCURACIES:
            x, y = _series(recs, key)
            if x.size:
                ax_acc.plot(x, y, linestyle=style, marker=".", color=c,
                            label=(name if key == "test_acc" else None) if name else what)
        for rec, style in ((recs[0], "--"), (recs[-1], "-")):
            pk = rec.get("pass_at_k") or {}
            ks = sorted((int(k), float(v)) for k, v in pk.items() if str(k).isdigit())
            if ks:
                ax_k.plot([k for k, _ in ks], [v for _, v in ks], linestyle=style, marker="o",
                          color=c, ms=3, label=f"{name} round {rec['round']}".strip())
        if fit.ok:
            lo, hi = fit.params["U_s_inf"].lo, fit.params["U_s_inf"].hi
            ax_u.axhspan(lo, hi, color=c, alpha=0.08, lw=0)
    ax_u.set(title="U_s (●) and U_v (■): coupled fit, limits dotted, U_s∞ 95 % band",
             xlabel="round", ylabel="NLL (nats)")
    ax_g.set(title="solver-verifier gap G = U_s − U_v", xlabel="round", ylabel="G (nats)")
    ax_acc.set(title="accuracy: test (solid), solver picks (dashed), verifier (dotted)", xlabel="round", ylabel="fraction right", ylim=(0, 1.02))
    ax_k.set(title="pass@k (first round dashed, last solid)", xlabel="k", ylabel="pass@k",
             xscale="log", ylim=(0, 1.02))
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not ax_k.lines:
        ax_k.text(0.5, 0.5, "no pass@k recorded", ha="center", va="center", transform=ax_k.transAxes)
    fig.suptitle(", ".join(run_labels(runs)) if len(runs) <= 4 else f"{len(runs)} runs")
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}{out.suffix}")
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
