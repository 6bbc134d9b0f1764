"""Variable projection: the one fitting routine the dynamics models share (silab.theory.models).

A model is linear coefficients times basis functions of one or two nonlinear parameters θ (a
Family). For a given θ the best coefficients are one least-squares solve, so a fit is a search over
θ alone: a log-spaced grid first (short noisy curves have several local minima and a grid sees all
of them), then a refinement from the best grid point (Brent's method for one rate; bounded least
squares from the best points of two basins for two parameters), then the covariance σ² (JᵀJ)⁻¹.

Too few points for the parameters, an optimiser failure, or a rate pinned at the edge of its range
(the data show no curvature, so the limit is an extrapolation of a straight line) all give
converged=False and a message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import optimize

from silab.theory.data import Series

NO_LIMIT = "the curve shows no clear saturation, so its limit is not identified"


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
