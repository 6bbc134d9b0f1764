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
from silab.theory.evaluate import (Estimate, Linearity, accuracy_limit, heldout, linearity,
                                   saturation)
from silab.theory.models import ModelFit, fit

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
