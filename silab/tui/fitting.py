"""The one door from the lab to `silab.theory` (tests/test_layers.py keeps it the only one): run its
fits and its sandbox simulation, keep what the screen shows.

`fit_records` runs the theory's `fit_run` (the paper's coupled model) and `compare_run` (coupled,
separate exponentials, power, two exponentials: R², forecast error, the shared-rate test, the best
model's limits) and reads their typed results into the rows the widgets draw. Called from a worker
thread: numpy/scipy load lazily, off the UI loop.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # theory's types; imported for real inside fit_records (numpy/scipy are slow)
    from silab.theory.cross import Trajectory
    from silab.theory.summary import Comparison, Summary

SERIES = ("U_s", "U_v", "G")
THEORY_SERIES = {"U_s": "solver", "U_v": "verifier", "G": "gap"}

# Rows of the coupled-parameter table: label -> the key theory's Summary.params uses.
PARAM_ROWS: list[tuple[str, str]] = [
    ("λ", "lambda"), ("U_s∞", "U_s_inf"), ("U_v∞", "U_v_inf"), ("G∞", "G_inf"),
    ("α/β", "alpha_over_beta"),
]


@dataclass
class ParamRow:
    name: str
    value: float | None
    lo: float | None = None
    hi: float | None = None


@dataclass
class FitSummary:
    """What the table and the plots need from a fit; `note` explains an empty one.
    `comparison` is theory's own Comparison of every model (None until computed)."""
    params: list[ParamRow] = field(default_factory=list)
    r2: float | None = None
    heldout: float | None = None
    acc_inf: float | None = None
    predict: Callable[[Sequence[float]], dict[str, list[float]]] | None = None
    n_rounds: int = 0
    note: str = ""
    comparison: Comparison | None = None

    @property
    def ok(self) -> bool:
        return bool(self.params)

    def param(self, name: str) -> float | None:
        for row in self.params:
            if row.name == name:
                return row.value
        return None


def fit_records(records: list[dict[str, Any]], compare: bool = True) -> FitSummary:
    """Fit the coupled model (and compare all models) on the completed rounds; never raises."""
    from silab.theory.summary import fit_run

    summary = summarize(fit_run(records), len(records))
    if compare:
        summary.comparison = compare_records(records)
    return summary


def compare_records(records: list[dict[str, Any]]) -> Comparison:
    """Every model on the completed rounds (theory's Comparison); never raises."""
    from silab.theory.summary import compare_run

    return compare_run(records)


def simulate(lam: float, alpha_over_beta: float, g_inf: float, us0: float, uv0: float, gamma: float,
             schedule: str | list[float], horizon: int, schedule_rounds: int) -> Trajectory:
    """The theory sandbox's prediction (theory.cross.simulate_identified); ValueError names a bad
    number."""
    from silab.theory.cross import simulate_identified

    return simulate_identified(lam, alpha_over_beta, g_inf, us0, uv0, gamma, schedule, horizon,
                               schedule_rounds=schedule_rounds)


def summarize(result: Summary, n_rounds: int = 0) -> FitSummary:
    """Read theory's Summary of the coupled model into the table's rows and plot curves."""
    if not (result.ok and result.params):
        return FitSummary(n_rounds=n_rounds, note=result.message or "no fit")
    rows = [ParamRow(label, _num(e.value), _num(e.lo), _num(e.hi))
            for label, key in PARAM_ROWS for e in [result.params.get(key)] if e is not None]
    r2 = [v for v in (_num(x) for x in result.r2.values()) if v is not None]

    def predict(t: Sequence[float]) -> dict[str, list[float]]:
        curves = result.predict(list(t))
        return {ui: [float(v) for v in curves[th]] for ui, th in THEORY_SERIES.items()}

    return FitSummary(params=rows, r2=min(r2) if r2 else None, heldout=_num(result.heldout_mse),
                      acc_inf=_num(result.accuracy_inf.value) if result.accuracy_inf else None,
                      predict=predict, n_rounds=n_rounds)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
