"""`fit_run`: the one call the UI makes after every round.

It fits the paper's coupled model to the rounds so far and returns a `Summary` with the numbers a
person watching a run wants (rate, limits with 95 % intervals, R², the error forecasting the last
round, when the run saturates, the accuracy limit) and `predict(t)` for drawing the fit and its
extrapolation to the limit. It is cheap (a few milliseconds for 20 rounds) and never raises: too
few rounds, or a fit that fails, give `ok=False` and a message to show instead.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from silab.theory.data import panel_from_records
from silab.theory.evaluate import (Estimate, Heldout, Linearity, Rolling, SharedRate,
                                   accuracy_limit, heldout, linearity, rolling, saturation,
                                   shared_rate)
from silab.theory.models import MODELS, ModelFit, fit, fit_curve
from silab.theory.varpro import NO_LIMIT

MIN_ROUNDS = 4      # 5 parameters over 2 x 4 points leaves 3 degrees of freedom


@dataclass
class Summary:
    """The coupled model on a run so far. `params` keys: lambda, U_s_inf, U_v_inf, G_inf,
    alpha_over_beta, alpha_prime, beta_prime, delta, b_over_k, k_alpha_minus_beta."""
    ok: bool
    message: str
    n_rounds: int
    params: dict[str, Estimate] = field(default_factory=dict)
    r2: dict[str, float] = field(default_factory=dict)
    heldout_mse: float | None = None          # forecasting the last round(s) from the others
    saturation_t: Estimate | None = None      # round by which U_s is 95 % of the way to U_s_inf
    accuracy_inf: Estimate | None = None      # test_acc fitted with one exponential
    linearity: Linearity | None = None
    fit: ModelFit | None = field(default=None, repr=False)

    def predict(self, t) -> dict[str, np.ndarray]:
        """Fitted solver, verifier and gap at times t (NaN when there is no fit)."""
        t = np.asarray(t, dtype=float)
        if self.fit is None or not self.fit.params:
            return {s: np.full(t.shape, np.nan) for s in ("solver", "verifier", "gap")}
        return self.fit.predict(t)


def fit_run(records: list[dict], holdout: int = 1) -> Summary:
    """Fit the rounds.jsonl records of a run (dicts with round, U_s, U_v, G and maybe test_acc)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return _fit_run(records, holdout)
    except Exception as exc:  # the UI must keep running whatever the numbers are
        return Summary(False, f"fit failed: {type(exc).__name__}: {exc}", len(records or []))


def _fit_run(records: list[dict], holdout: int) -> Summary:
    panel = panel_from_records(records)
    n = len(panel["solver"])
    if n < MIN_ROUNDS:
        return Summary(False, f"not enough rounds: {n} of {MIN_ROUNDS} needed", n)
    f = fit("coupled", panel)
    if not f.params:
        return Summary(False, f.message or "the fit failed", n, fit=f)
    params = {k: Estimate.of(f, k) for k in f.params}
    curves = {s: panel[s] for s in ("solver", "verifier", "gap")}
    mse = None
    if holdout > 0 and n - holdout >= MIN_ROUNDS:
        mse = heldout("coupled", curves, holdout).mse
    acc = None
    if "accuracy" in panel and len(panel["accuracy"]) >= MIN_ROUNDS:
        acc, _ = accuracy_limit(panel["accuracy"])
    sat = saturation(f) if f.converged else None
    message = f.message
    if acc is not None and not (math.isfinite(acc.value) and 0 <= acc.value <= 1):
        message = (message + "; " if message else "") + "accuracy limit outside [0, 1]"
    return Summary(f.converged, message, n, params, f.r2, mse, sat, acc,
                   linearity(panel["gap"]), f)


# ---------------------------------------------------------------------------------------------
# Which model describes the run: `compare_run`, the lab's fit panel

LIMIT_KEYS = {"coupled": ("U_s_inf", "U_v_inf")}     # others: solver.Y_inf, verifier.Y_inf
ALPHA = 0.05


@dataclass
class Comparison:
    """Every model on a run so far. `best` forecasts best: by the rolling-origin one-round-ahead
    error once there are enough rounds (`scored_by` "rolling"), else by forecasting the last round
    (`scored_by` "held-out"). `limits` ("U_s", "U_v", "accuracy") come from the best model."""
    ok: bool
    message: str
    n_rounds: int
    fits: dict[str, ModelFit] = field(default_factory=dict)
    forecast_mse: dict[str, float | None] = field(default_factory=dict)
    scored_by: str = ""
    rolling: Rolling | None = None
    heldout: dict[str, Heldout] = field(default_factory=dict)
    shared: SharedRate | None = None
    best: str | None = None
    limits: dict[str, Estimate] = field(default_factory=dict)
    limit_models: dict[str, str] = field(default_factory=dict)  # the model each limit is from
    limit_notes: dict[str, str] = field(default_factory=dict)   # why a limit is not to be trusted

    @property
    def shared_rejected(self) -> bool | None:
        return None if self.shared is None else self.shared.p < ALPHA

    def verdict(self) -> str:
        """One line: which model forecasts best, and whether one shared rate is rejected."""
        if not self.ok:
            return self.message
        parts = []
        if self.best:
            err = self.forecast_mse.get(self.best)
            coupled = self.forecast_mse.get("coupled")
            ratio = (f", {coupled / err:.1f}× better than coupled"
                     if self.best != "coupled" and coupled and err else "")
            parts.append(f"{self.best} forecasts best ({self.scored_by} MSE {err:.3g}{ratio})")
        if self.shared is not None:
            word = "rejected" if self.shared_rejected else "not rejected"
            parts.append(f"one shared rate {word} (p = {self.shared.p:.2g})")
        return "; ".join(parts) or "no model could be scored yet"


def compare_run(records: list[dict], models=MODELS) -> Comparison:
    """Fit every model to the rounds so far and score their forecasts; never raises."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return _compare_run(records, tuple(models))
    except Exception as exc:  # the UI must keep running whatever the numbers are
        return Comparison(False, f"comparison failed: {type(exc).__name__}: {exc}",
                          len(records or []))


def _compare_run(records: list[dict], models: tuple[str, ...]) -> Comparison:
    panel = panel_from_records(records)
    n = len(panel["solver"])
    if n < MIN_ROUNDS + 1:
        return Comparison(False, f"not enough rounds to compare models: {n} of "
                          f"{MIN_ROUNDS + 1} needed", n)
    curves = {s: panel[s] for s in ("solver", "verifier", "gap")}
    fits = {m: fit(m, curves) for m in models}
    roll = rolling(curves, models)
    held: dict[str, Heldout] = {}
    if roll is not None:
        scores, scored_by = dict(roll.mse), "rolling"
    else:
        held = {m: heldout(m, curves, 1) for m in models}
        scores, scored_by = {m: h.mse for m, h in held.items()}, "held-out"
    scored = {m: v for m, v in scores.items() if v is not None and fits[m].params}
    best = min(scored, key=scored.get) if scored else None
    shared = (shared_rate(curves, fits["coupled"], fits["exp"])
              if {"coupled", "exp"} <= set(fits) else None)
    limits, used, notes = best_limits(best, fits[best], panel) if best else ({}, {}, {})
    return Comparison(True, "", n, fits, scores, scored_by, roll, held, shared, best, limits,
                      used, notes)


def best_limits(model: str, f: ModelFit, panel) -> tuple[dict, dict, dict]:
    """The best model's limits, the model each came from, and a note where one is not to be
    trusted (no saturation in sight, or no interval)."""
    out, used, notes = {}, {}, {}
    for name, series in (("U_s", "solver"), ("U_v", "verifier")):
        if model == "coupled":
            g, key = f, f"{name}_inf"
        else:
            g, key = fit_curve(model, panel[series]), "Y_inf"
        if key in g.params:
            out[name], used[name] = Estimate.of(g, key), model
            if NO_LIMIT in g.message:
                notes[name] = f"not identified by {model}: the curve shows no clear saturation"
            elif not math.isfinite(out[name].stderr):
                notes[name] = f"no interval: {g.message}"
    if "accuracy" in panel and len(panel["accuracy"]) >= MIN_ROUNDS:
        family = "exp" if model == "coupled" else model
        acc = fit_curve(family, panel["accuracy"])
        if family != "exp" and not acc.converged:      # e.g. exp2 on a curve with one rate
            family, acc = "exp", fit_curve("exp", panel["accuracy"])
        if "Y_inf" in acc.params:
            out["accuracy"], used["accuracy"] = Estimate.of(acc, "Y_inf"), family
            if NO_LIMIT in acc.message:
                notes["accuracy"] = "not identified: the curve shows no clear saturation"
    return out, used, notes
