"""The one door from the lab to `silab.theory`: run its fit, keep what the screen shows.

The theory package owns the coupled model; this adapter only reads its result into a small,
fixed shape (rows with intervals, R², held-out error, curves), so the widgets never depend on
how theory names things. Called from a worker thread: numpy/scipy load lazily, off the UI loop.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SERIES = ("U_s", "U_v", "G")

# Rows of the parameter table: label -> names theory might use for it.
PARAM_ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("λ", ("lambda", "lam", "lambda_", "rate", "λ")),
    ("U_s∞", ("U_s_inf", "Us_inf", "U_s_infinity", "us_inf", "U_s∞")),
    ("U_v∞", ("U_v_inf", "Uv_inf", "U_v_infinity", "uv_inf", "U_v∞")),
    ("G∞", ("G_inf", "g_inf", "G_infinity", "G∞")),
    ("α/β", ("alpha_over_beta", "alpha_beta", "ab_ratio", "ratio", "α/β")),
]


@dataclass
class ParamRow:
    name: str
    value: float | None
    lo: float | None = None
    hi: float | None = None


@dataclass
class FitSummary:
    """What the table and the plots need from a fit; `note` explains an empty one."""
    params: list[ParamRow] = field(default_factory=list)
    r2: float | None = None
    heldout: float | None = None
    acc_inf: float | None = None
    predict: Callable[[Sequence[float]], dict[str, list[float]]] | None = None
    n_rounds: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.params)

    def param(self, name: str) -> float | None:
        for row in self.params:
            if row.name == name:
                return row.value
        return None


def fit_records(records: list[dict[str, Any]]) -> FitSummary:
    """Fit the coupled model to the completed rounds; never raises (a failed fit is a note)."""
    n = len(records)
    try:
        try:
            from silab.theory import fit_run
        except ImportError:
            from silab.theory.summary import fit_run
    except ImportError:
        return FitSummary(n_rounds=n, note="no fit: silab.theory is not available")
    try:
        result = fit_run(records)
    except Exception as exc:  # fit_run promises not to raise; the screen must survive if it does
        return FitSummary(n_rounds=n, note=f"no fit: {type(exc).__name__}: {exc}"[:200])
    if result is None:
        return FitSummary(n_rounds=n, note="no fit for these rounds")
    return summarize(result, n)


def summarize(result: Any, n_rounds: int = 0) -> FitSummary:
    """Read a theory fit result (object or mapping) into a FitSummary."""
    params = _get(result, "params", "parameters", default={}) or {}
    intervals = _get(result, "intervals", "ci", "ci95", "conf_int", default={}) or {}
    rows = []
    for label, names in PARAM_ROWS:
        value, lo, hi = _param(params, intervals, names)
        if value is None:
            value, lo, hi = _param(result, intervals, names)
        rows.append(ParamRow(label, value, lo, hi))
    summary = FitSummary(
        params=rows if any(r.value is not None for r in rows) else [],
        r2=_scalar(_get(result, "r2", "r_squared", "R2", default=None)),
        heldout=_scalar(_get(result, "heldout_mse", "heldout_error", "held_out_error",
                             "holdout_error", "heldout", default=None)),
        acc_inf=_scalar(_get(result, "accuracy_inf", default=None)),
        n_rounds=n_rounds)
    predict = getattr(result, "predict", None)
    if callable(predict):
        summary.predict = lambda t, _p=predict: _curves(_p(list(t)))
    if _get(result, "ok", default=True) is False or not summary.params:
        summary.params, summary.predict = [], None
        summary.note = str(_get(result, "message", "note", default="") or "no fit")
    return summary


# ---------------------------------------------------------------------------------------------

def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if not isinstance(obj, dict) and hasattr(obj, name):
            return getattr(obj, name)
    return default


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _scalar(x: Any) -> float | None:
    """A number; a per-series mapping (e.g. R² per curve) reads as its worst (minimum) entry."""
    if isinstance(x, dict):
        vals = [v for v in (_num(v) for v in x.values()) if v is not None]
        return min(vals) if vals else None
    return _num(_get(x, "value", default=x))


def _param(source: Any, intervals: Any, names: tuple[str, ...]) -> tuple[float | None, ...]:
    raw = _get(source, *names, default=None)
    if raw is None:
        return None, None, None
    lo = hi = None
    if isinstance(raw, (tuple, list)) and len(raw) == 3:
        value, lo, hi = raw
    elif isinstance(raw, dict) or hasattr(raw, "value"):
        value = _get(raw, "value", "estimate", "est")
        ci = _get(raw, "ci", "interval", "ci95", default=None)
        if isinstance(ci, (tuple, list)) and len(ci) == 2:
            lo, hi = ci
        else:
            lo, hi = _get(raw, "lo", "low", "lower"), _get(raw, "hi", "high", "upper")
    else:
        value = raw
    if lo is None and hi is None:
        ci = _get(intervals, *names, default=None)
        if isinstance(ci, (tuple, list)) and len(ci) == 2:
            lo, hi = ci
    return _num(value), _num(lo), _num(hi)


def _curves(pred: Any) -> dict[str, list[float]]:
    """predict(t) output -> {"U_s": [...], "U_v": [...], "G": [...]} (G = U_s − U_v if absent)."""
    out: dict[str, list[float]] = {}
    if isinstance(pred, dict) or not isinstance(pred, (tuple, list)):
        for key, names in (("U_s", ("U_s", "us", "Us", "solver")),
                           ("U_v", ("U_v", "uv", "Uv", "verifier")),
                           ("G", ("G", "g", "gap"))):
            val = _get(pred, *names, default=None)
            if val is not None:
                out[key] = [float(v) for v in val]
    else:
        for key, val in zip(SERIES, pred):
            out[key] = [float(v) for v in val]
    if "G" not in out and "U_s" in out and "U_v" in out:
        out["G"] = [a - b for a, b in zip(out["U_s"], out["U_v"])]
    return out
