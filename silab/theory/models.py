"""The four dynamics models, fitted with silab.theory.varpro, and their results in the paper's terms.

Every model is linear parameters times basis functions of one or two nonlinear parameters θ:

    exp      y = Y_inf + c e^{-λ t}                              θ = (λ,)
    exp2     y = Y_inf + c1 e^{-λ1 t} + c2 e^{-λ2 t}             θ = (λ1, λ2), λ1 < λ2
    power    y = Y_inf + c (t + τ)^{-p}                          θ = (τ, p)
    coupled  U_s = U_s_inf + α' e^{-λ t},  U_v = U_v_inf + β' e^{-λ t},  one λ for both curves
             (Sun et al., Prop. 3.1; the gap is implied: G = U_s - U_v)

Standard errors come from the Jacobian at the optimum (σ² (JᵀJ)⁻¹, σ² = RSS/dof) and 95 % intervals
from Student's t; on synthetic coupled curves they cover the true λ and U_s_inf about 94 % of the
time. A fit that cannot be trusted says so (converged=False and a message), never quietly wrong
numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
from scipy import stats

from silab.theory.data import Panel, Series
from silab.theory.varpro import CurvesFit, fit_curves

MODELS = ("coupled", "exp", "power", "exp2")
SEPARATE_SERIES = ("solver", "verifier", "gap")


# ---------------------------------------------------------------------------------------------
# Public results: named parameters, errors, intervals, R², and predict(t)

@dataclass
class ModelFit:
    """A model fitted to a panel (or one curve): what the JSON output and the UI show."""
    model: str
    params: dict[str, float]
    stderr: dict[str, float]                   # NaN where the data do not identify it
    ci: dict[str, tuple[float, float]]         # 95 %
    r2: dict[str, float]
    converged: bool
    message: str = ""
    _curves: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict, repr=False)

    def predict(self, t) -> dict[str, np.ndarray]:
        """Model curves at times t (NaN everywhere when the fit failed)."""
        t = np.asarray(t, dtype=float)
        if not self._curves:
            return {s: np.full(t.shape, np.nan) for s in self.r2}
        return {s: f(t) for s, f in self._curves.items()}


def r_squared(y: np.ndarray, yhat: np.ndarray) -> float:
    """In-sample R² = 1 - RSS/TSS (NaN for a flat series)."""
    tss = float(np.sum((y - y.mean()) ** 2))
    if tss == 0 or not np.all(np.isfinite(yhat)):
        return float("nan")
    return 1.0 - float(np.sum((y - yhat) ** 2)) / tss


@lru_cache(maxsize=None)
def t975(dof: int) -> float:
    """Two-sided 95 % quantile of Student's t (cached: scipy's ppf is slow)."""
    return float(stats.t.ppf(0.975, dof))


def _interval(value: float, se: float, dof: int) -> tuple[float, float]:
    if not (np.isfinite(se) and dof > 0):
        return (float("nan"), float("nan"))
    q = t975(dof)
    return (value - q * se, value + q * se)


def _named(fit: CurvesFit, prefix: str, j: int) -> tuple[dict, dict, dict]:
    """Params/stderr/ci of curve j of a separate-rates fit, keys like 'solver.lambda'."""
    fam, d, m = fit.family, len(fit.theta), len(fit.family.coef_names)
    idx = list(range(d)) + [d + j * m + i for i in range(m)]
    names = list(fam.theta_names) + list(fam.coef_names)
    values = np.concatenate([fit.theta, fit.coefs[j]])
    se = (np.sqrt(np.maximum(np.diag(fit.cov)[idx], 0)) if fit.cov is not None
          else np.full(len(idx), np.nan))
    params, stderr, ci = {}, {}, {}
    for name, v, s in zip(names, values, se):
        key = f"{prefix}.{name}" if prefix else name
        params[key], stderr[key] = float(v), float(s)
        ci[key] = _interval(float(v), float(s), fit.dof)
    return params, stderr, ci


def fit_curve(model: str, series: Series) -> ModelFit:
    """One separate-rates model (exp, power, exp2) on one curve; parameter keys have no prefix."""
    fit = fit_curves(model, [series])
    params, stderr, ci = _named(fit, "", 0) if np.all(np.isfinite(fit.theta)) else ({}, {}, {})
    curves = {"y": fit.curve(0)} if params else {}
    r2 = {"y": r_squared(series.y, curves["y"](series.t)) if curves else float("nan")}
    return ModelFit(model, params, stderr, ci, r2, fit.converged, fit.message, curves)


def fit(model: str, panel: Panel) -> ModelFit:
    """Fit `model` to a panel. coupled: solver and verifier jointly; others: each series alone."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    if model == "coupled":
        return _fit_coupled(panel)
    params, stderr, ci, r2, curves, messages, ok = {}, {}, {}, {}, {}, [], True
    for s in SEPARATE_SERIES:
        if s not in panel:
            continue
        f = fit_curves(model, [panel[s]])
        if np.all(np.isfinite(f.theta)):
            p, e, c = _named(f, s, 0)
            params.update(p)
            stderr.update(e)
            ci.update(c)
            curves[s] = f.curve(0)
            r2[s] = r_squared(panel[s].y, curves[s](panel[s].t))
        else:
            r2[s] = float("nan")
        ok &= f.converged
        if f.message:
            messages.append(f"{s}: {f.message}")
    return ModelFit(model, params, stderr, ci, r2, ok, "; ".join(messages), curves)


def _fit_coupled(panel: Panel) -> ModelFit:
    """The exp family on solver and verifier with one shared λ, reported in the paper's terms."""
    f = fit_curves("exp", [panel["solver"], panel["verifier"]])
    r2 = {k: float("nan") for k in SEPARATE_SERIES if k in panel}
    if not np.all(np.isfinite(f.theta)):
        return ModelFit("coupled", {}, {}, {}, r2, False, f.message)
    lam = f.theta[0]
    (us_inf, a_p), (uv_inf, b_p) = f.coefs
    base = np.array([lam, a_p, b_p, us_inf, uv_inf])
    # f.cov is ordered [λ, U_s_inf, α', U_v_inf, β']; reorder to `base`
    cov = None if f.cov is None else f.cov[np.ix_([0, 2, 4, 1, 3], [0, 2, 4, 1, 3])]
    derived: dict[str, Callable[[np.ndarray], float]] = {
        "lambda": lambda p: p[0],
        "alpha_prime": lambda p: p[1],
        "beta_prime": lambda p: p[2],
        "U_s_inf": lambda p: p[3],
        "U_v_inf": lambda p: p[4],
        "G_inf": lambda p: p[3] - p[4],            # = b/k
        "alpha_over_beta": lambda p: p[1] / p[2],  # α'/β' = α/β
        "delta": lambda p: p[1] - p[2],            # δ = U_s0 - U_v0 - b/k
        "b_over_k": lambda p: p[3] - p[4],
        "k_alpha_minus_beta": lambda p: p[0],      # = λ
    }
    params, stderr, ci = {}, {}, {}
    for name, g in derived.items():
        value = float(g(base))
        se = _delta_se(g, base, cov)
        params[name], stderr[name], ci[name] = value, se, _interval(value, se, f.dof)
    curves = {"solver": f.curve(0), "verifier": f.curve(1)}
    curves["gap"] = lambda t, a=curves["solver"], b=curves["verifier"]: a(t) - b(t)
    for k in r2:
        r2[k] = r_squared(panel[k].y, curves[k](panel[k].t))
    message = f.message
    if f.converged and not (params["alpha_over_beta"] > 1):
        message = (message + "; " if message else "") + (
            f"alpha/beta = {params['alpha_over_beta']:.3g} is not > 1: the solver does not "
            "move more than the verifier, outside the paper's assumption alpha > beta > 0")
    return ModelFit("coupled", params, stderr, ci, r2, f.converged, message, curves)


def _delta_se(g: Callable[[np.ndarray], float], p: np.ndarray, cov: np.ndarray | None) -> float:
    """Standard error of g(p) by the delta method (numerical gradient)."""
    if cov is None:
        return float("nan")
    grad = np.empty(p.size)
    for i in range(p.size):
        h = 1e-6 * max(abs(p[i]), 1e-3)
        up, dn = p.copy(), p.copy()
        up[i] += h
        dn[i] -= h
        grad[i] = (g(up) - g(dn)) / (2 * h)
    var = float(grad @ cov @ grad)
    return float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan")
