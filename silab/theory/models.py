"""The four dynamics models and the one fitting routine they share.

Every model is linear parameters times basis functions of one or two nonlinear parameters θ:

    exp      y = Y_inf + c e^{-λ t}                              θ = (λ,)
    exp2     y = Y_inf + c1 e^{-λ1 t} + c2 e^{-λ2 t}             θ = (λ1, λ2), λ1 < λ2
    power    y = Y_inf + c (t + τ)^{-p}                          θ = (τ, p)
    coupled  U_s = U_s_inf + α' e^{-λ t},  U_v = U_v_inf + β' e^{-λ t},  one λ for both curves
             (Sun et al., Prop. 3.1; the gap is implied: G = U_s - U_v)

For a given θ the best linear parameters are one least-squares solve (variable projection), so a
fit is a search over θ alone: a log-spaced grid first (short noisy curves have several local minima
and a grid sees all of them), then a refinement from the best grid point (Brent's method for one
rate; bounded least squares from the best points of two basins for two parameters). Standard errors
come from the Jacobian at the optimum (σ² (JᵀJ)⁻¹, σ² = RSS/dof) and 95 % intervals from Student's t;
on synthetic coupled curves they cover the true λ and U_s_inf about 94 % of the time.

A fit that cannot be trusted says so: too few points for its parameters, an optimiser failure, or a
rate pinned at the edge of its range (the data show no curvature, so the limit is an extrapolation
of a straight line) all give converged=False and a message, never quietly wrong numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
from scipy import optimize, stats

from silab.theory.data import Panel, Series

MODELS = ("coupled", "exp", "power", "exp2")
NO_LIMIT = "the curve shows no clear saturation, so its limit is not identified"
SEPARATE_SERIES = ("solver", "verifier", "gap")


# ---------------------------------------------------------------------------------------------
# Families: basis functions of θ and the box θ is searched in

@dataclass(frozen=True)
class Family:
    """A basis y = B(θ, t) @ coefs. θ is searched in log(θ + shift) so every bound is positive."""
    name: str
    theta_names: tuple[str, ...]
    coef_names: tuple[str, ...]
    basis: Callable[[np.ndarray, np.ndarray], np.ndarray]      # θ (..., d), t (n,) -> (..., n, m)
    box: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]  # t -> lo, hi, shift
    grid_size: int


def _exp_basis(theta, t):
    e = np.exp(-theta[..., :, None] * t)                       # (..., d, n)
    ones = np.ones(theta.shape[:-1] + (1, t.size))
    return np.concatenate([ones, e], axis=-2).swapaxes(-1, -2)


def _power_basis(theta, t):
    tau, p = theta[..., 0:1], theta[..., 1:2]
    x = np.maximum(t + tau, 1e-300)                            # (..., n)
    cols = [np.ones_like(x), x ** -p]
    return np.stack(cols, axis=-1)


def _rate_box(t, d):
    span = t.max() - t.min()
    dt = np.diff(np.unique(t)).min()
    # from "barely curved across the window" to "done within one step"
    return np.full(d, 0.01 / span), np.full(d, 5.0 / dt), np.zeros(d)


def _power_box(t):
    span = t.max() - t.min()
    dt = np.diff(np.unique(t)).min()
    # searched in s = t0 + τ (the shifted time of the first point), from a tenth of a step to far
    # beyond the window; p from almost flat to almost exponential
    return np.array([0.05 * dt, 0.05]), np.array([50.0 * span, 20.0]), np.array([t.min(), 0.0])


FAMILIES = {
    "exp": Family("exp", ("lambda",), ("Y_inf", "c"), _exp_basis, lambda t: _rate_box(t, 1), 60),
    "exp2": Family("exp2", ("lambda1", "lambda2"), ("Y_inf", "c1", "c2"), _exp_basis,
                   lambda t: _rate_box(t, 2), 24),
    "power": Family("power", ("tau", "p"), ("Y_inf", "c"), _power_basis, _power_box, 24),
}


# ---------------------------------------------------------------------------------------------
# Variable projection: best coefficients for a stack of θ, and the search over θ

def _solve(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares for stacked designs A (..., n, m) against y (n,): coefs (..., m), rss (...)."""
    scale = np.linalg.norm(A, axis=-2, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    if A.ndim == 2:                                           # one design: LAPACK directly
        coef = np.linalg.lstsq(A / scale, y, rcond=1e-12)[0] / scale[0, :]
    else:
        coef = (np.linalg.pinv(A / scale, rcond=1e-12) @ y[:, None])[..., 0] / scale[..., 0, :]
    resid = (A @ coef[..., None])[..., 0] - y
    return coef, np.einsum("...n,...n->...", resid, resid)


def _grid(fam: Family, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    axes = [np.geomspace(a, b, fam.grid_size) for a, b in zip(lo, hi)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(lo))
    if fam.name == "exp2":                                      # λ1 < λ2, clearly apart
        pts = pts[pts[:, 1] > 1.5 * pts[:, 0]]
    return pts


@dataclass
class CurvesFit:
    """Raw result of fitting one family to one or more curves that share θ."""
    family: Family
    theta: np.ndarray                  # reported θ (τ unshifted)
    coefs: list[np.ndarray]            # one coefficient vector per curve
    rss: float
    n: int                             # data points over all curves
    n_params: int
    cov: np.ndarray | None             # over [θ, coefs of curve 0, coefs of curve 1, ...]
    converged: bool
    message: str

    @property
    def dof(self) -> int:
        return self.n - self.n_params

    def curve(self, j: int) -> Callable[[np.ndarray], np.ndarray]:
        theta, coef, basis = self.theta.copy(), self.coefs[j].copy(), self.family.basis
        return lambda t: basis(theta, np.asarray(t, dtype=float)) @ coef


def fit_curves(family: str | Family, curves: list[Series]) -> CurvesFit:
    """Fit one family to curves sharing θ (each with its own coefficients)."""
    fam = FAMILIES[family] if isinstance(family, str) else family
    d, m = len(fam.theta_names), len(fam.coef_names)
    n = sum(len(c) for c in curves)
    n_params = d + m * len(curves)
    t_all = np.concatenate([c.t for c in curves])
    if n <= n_params or np.unique(t_all).size < 2:
        return _failed(fam, curves, n, n_params,
                       f"not enough points: {n} for {n_params} parameters")
    lo, hi, shift = fam.box(t_all)
    ulo, uhi = np.log(lo), np.log(hi)

    def rss_of(theta_batch):
        return sum(_solve(fam.basis(theta_batch, c.t), c.y)[1] for c in curves)

    def projected(u_batch):                    # residuals after the linear solve, (B, n)
        theta = np.exp(u_batch) - shift
        out = []
        for c in curves:
            A = fam.basis(theta, c.t)
            out.append((A @ _solve(A, c.y)[0][..., None])[..., 0] - c.y)
        return np.concatenate(out, axis=-1)

    def residuals(u):
        return projected(u[None])[0]

    def jacobian(u):                           # forward differences, all in one batched solve
        h = 1e-7
        r = projected(np.vstack([u, u + h * np.eye(d)]))
        return ((r[1:] - r[0]) / h).T

    grid = _grid(fam, lo, hi)
    grid_rss = rss_of(grid - shift)
    order = np.argsort(grid_rss)
    starts = [np.log(grid[order[0]])]
    if d > 1:                                                  # and the best of another basin
        far = np.abs(np.log(grid[order]) - starts[0]).max(axis=1) > 1.0
        if far.any():
            starts.append(np.log(grid[order[np.argmax(far)]]))
    if d == 1:                                 # one rate: Brent between the grid neighbours
        u = _brent(lambda x: float(rss_of(np.exp(np.array([[x]])) - shift)[0]),
                   [u0[0] for u0 in starts], np.log(grid[:, 0]), ulo[0], uhi[0])
    else:
        u = _least_squares(residuals, jacobian, starts, ulo, uhi)
    if u is None:
        return _failed(fam, curves, n, n_params, "the optimiser failed from every start")
    theta = np.exp(u) - shift
    if fam.name == "exp2" and theta[0] > theta[1]:
        theta = theta[::-1].copy()
    coefs = [_solve(fam.basis(theta, c.t), c.y)[0] for c in curves]
    rss = float(sum(_solve(fam.basis(theta, c.t), c.y)[1] for c in curves))
    message = ""
    converged = True
    at_low, at_high = u - ulo < 1e-3, uhi - u < 1e-3
    if np.any(at_low | at_high):
        converged, message = False, _edge_message(fam, theta, at_low, at_high)
    if fam.name == "exp2" and converged and theta[1] < 1.2 * theta[0]:
        converged, message = False, "the two rates merge: exp2 reduces to exp here"
    fit = CurvesFit(fam, theta, coefs, rss, n, n_params, None, converged, message)
    fit.cov, why = _covariance(fit, curves)
    if why and fit.converged:                  # numbers the data do not pin down are no fit
        fit.converged, fit.message = False, why
    return fit


def _brent(rss, starts, grid_u, ulo, uhi) -> np.ndarray | None:
    best = None
    for u0 in starts:
        i = int(np.clip(np.searchsorted(grid_u, u0), 1, grid_u.size - 1))
        a, b = max(grid_u[i - 1] - 1e-12, ulo), min(grid_u[min(i + 1, grid_u.size - 1)], uhi)
        res = optimize.minimize_scalar(rss, bounds=(a, b), method="bounded",
                                       options={"xatol": 1e-10})
        if res.success and np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    return None if best is None else np.array([best.x])


def _least_squares(residuals, jacobian, starts, ulo, uhi) -> np.ndarray | None:
    best = None
    for u0 in starts:
        u0 = np.clip(u0, ulo + 1e-9, uhi - 1e-9)
        try:
            res = optimize.least_squares(residuals, u0, jac=jacobian, bounds=(ulo, uhi),
                                         xtol=1e-9, ftol=1e-11, gtol=1e-11, max_nfev=200)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if res.status > 0 and np.all(np.isfinite(res.fun)) and (best is None or res.cost < best.cost):
            best = res
    return None if best is None else best.x


def _edge_message(fam: Family, theta, at_low, at_high) -> str:
    i = int(np.flatnonzero(at_low | at_high)[0])
    name = f"{fam.theta_names[i]}={theta[i]:.3g}"
    if fam.name in ("exp", "exp2") and at_low[i]:
        why = NO_LIMIT
    elif fam.name in ("exp", "exp2"):
        why = "the curve drops within one step, so its rate is not identified"
    elif at_high[i]:
        why = "the curve is closer to an exponential than to a power law (p, τ → ∞)"
    else:
        why = "the power law is not identified by these points"
    return f"{name} is at the edge of its search range: {why}"


def _failed(fam, curves, n, n_params, message) -> CurvesFit:
    d, m = len(fam.theta_names), len(fam.coef_names)
    return CurvesFit(fam, np.full(d, np.nan), [np.full(m, np.nan) for _ in curves], np.nan, n,
                     n_params, None, False, message)


def _covariance(fit: CurvesFit, curves: list[Series]) -> tuple[np.ndarray | None, str]:
    """σ² (JᵀJ)⁻¹ over all parameters; None and a reason when the data do not identify them."""
    d, m = len(fit.theta), len(fit.coefs[0])
    p0 = np.concatenate([fit.theta, *fit.coefs])

    def predict_all(p):
        theta = p[:d]
        return np.concatenate([fit.family.basis(theta, c.t) @ p[d + j * m: d + (j + 1) * m]
                               for j, c in enumerate(curves)])

    J = np.empty((fit.n, p0.size))
    for i in range(p0.size):
        h = 1e-6 * max(abs(p0[i]), 1e-3)
        up, dn = p0.copy(), p0.copy()
        up[i] += h
        dn[i] -= h
        J[:, i] = (predict_all(up) - predict_all(dn)) / (2 * h)
    if not np.all(np.isfinite(J)):
        return None, "the Jacobian is not finite at the optimum: no standard errors"
    norms = np.linalg.norm(J, axis=0)
    if np.any(norms == 0):
        return None, "a parameter has no effect on the fit: no standard errors"
    Js = J / norms
    M = Js.T @ Js
    if np.linalg.cond(M) > 1e13:
        return None, "the data do not identify all parameters: no standard errors"
    s2 = fit.rss / fit.dof
    return s2 * np.linalg.inv(M) / np.outer(norms, norms), ""


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
