"""Cross-improvement: a limited external data set, spent over the rounds, lifts the verifier
(Sun et al., Sec. 5).

The discrete dynamics, for rounds t = 1..T with shares η_t of the set (Σ η_t ≤ 1):

    U_v <- U_v / (1 + γ η_t)                        the external share of round t lifts the verifier
    (U_s, U_v) <- one round of self-improvement     the exact Prop. 3.1 step over Δt = 1

With γ = 0 this is the coupled model sampled at whole rounds, so a fitted run and a simulated run
agree exactly.

Prop. 5.1 says the final uncertainty depends only on Σ η_t. What these dynamics give exactly:
self-improvement moves (U_s, U_v) along the fixed direction (α, β), so it conserves
I = β U_s - α U_v, and the limit is set by I alone: U_s_inf = (α b/k - I)/(α - β). A lift in round
t raises I by α U_v γη_t/(1 + γη_t), with U_v the verifier it meets, so

    U_s_inf = U_s_inf(no data) - α/(α-β) Σ_t U_v(before lift t) γη_t/(1 + γη_t).

The schedule matters only through the verifier uncertainty each share meets. When the verifier
barely improves by itself (β = 0 exactly, or β << α) the lifts compound into Π_t (1 + γη_t), which
in the limited-data regime (small γ) is 1 + γ Σ η_t: Prop. 5.1. When the verifier also improves by
itself, a share spent early meets a larger U_v and buys more; `compare_schedules` shows how much.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, stats

from silab.config import schedule_shares as config_shares
from silab.protocol import SCHEDULES
from silab.theory.data import Series
from silab.theory.models import fit, r_squared


def schedule_shares(schedule: str | Sequence[float], T: int) -> np.ndarray:
    """Shares η_1..η_T of the external set, as the engine spends them (silab.config.schedule_shares:
    early all in round 1, late in round T, uniform 1/T, a list padded with zeros). ValueError on a
    bad name or list, or T < 1."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a whole number of rounds >= 1, got {T!r}")
    return np.asarray(config_shares(schedule, int(T)), dtype=float)


@dataclass(frozen=True)
class Trajectory:
    """Rounds 0..T of a simulated run, and where it would settle with no more external data."""
    t: np.ndarray
    U_s: np.ndarray
    U_v: np.ndarray
    G: np.ndarray
    eta: np.ndarray           # shares of rounds 1..T
    U_s_inf: float
    U_v_inf: float


def simulate(U_s0: float, U_v0: float, alpha: float, beta: float, k: float, b: float,
             gamma: float, schedule: str | Sequence[float], T: int) -> Trajectory:
    """Run T rounds of the discrete cross-improvement dynamics from (U_s0, U_v0)."""
    for name, x in (("U_s0", U_s0), ("U_v0", U_v0), ("alpha", alpha), ("beta", beta), ("k", k),
                    ("b", b), ("gamma", gamma)):
        if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)) \
                or not math.isfinite(x):
            raise ValueError(f"{name} must be a finite number, got {x!r}")
    if not alpha > beta >= 0:
        raise ValueError(f"need alpha > beta >= 0 (the solver learns faster), got {alpha}, {beta}")
    if not k > 0:
        raise ValueError(f"need k > 0 (a gap drives improvement), got {k}")
    if gamma < 0:
        raise ValueError(f"gamma cannot be negative, got {gamma}")
    eta = schedule_shares(schedule, T)
    us, uv = _run(U_s0, U_v0, k * (alpha - beta), beta / (alpha - beta), b / k, gamma, eta)
    a_frac, b_frac, delta_T = alpha / (alpha - beta), beta / (alpha - beta), us[-1] - uv[-1] - b / k
    return Trajectory(np.arange(T + 1, dtype=float), us, uv, us - uv, eta,
                      float(us[-1] - a_frac * delta_T), float(uv[-1] - b_frac * delta_T))


def _run(us0, uv0, lam, b_frac, g_inf, gamma, eta) -> tuple[np.ndarray, np.ndarray]:
    """The dynamics in the parameters the data identify: λ = k(α-β), β/(α-β), b/k, γ."""
    a_frac = 1.0 + b_frac                      # α/(α-β) - β/(α-β) = 1
    step = 1.0 - math.exp(-lam)                # share of the remaining distance covered per round
    us, uv = np.empty(eta.size + 1), np.empty(eta.size + 1)
    us[0], uv[0] = us0, uv0
    for t in range(1, eta.size + 1):
        s, v = us[t - 1], uv[t - 1] / (1.0 + gamma * eta[t - 1])
        delta = (s - v) - g_inf
        us[t] = s - a_frac * delta * step
        uv[t] = v - b_frac * delta * step
    return us, uv


def compare_schedules(U_s0: float, U_v0: float, alpha: float, beta: float, k: float, b: float,
                      gamma: float, T: int, schedules: Sequence = SCHEDULES
                      ) -> dict[str, Trajectory]:
    """Prop. 5.1, numerically: the same external set spent on different schedules."""
    return {(s if isinstance(s, str) else str(list(s))):
            simulate(U_s0, U_v0, alpha, beta, k, b, gamma, s, T) for s in schedules}


@dataclass(frozen=True)
class GammaFit:
    gamma: float
    stderr: float
    lo: float                 # 95 % interval, clipped at 0
    hi: float
    r2: dict[str, float]      # of the simulated run with data against the measured one
    converged: bool
    message: str = ""


def fit_gamma(schedule: str | Sequence[float], U_s_with, U_v_with, U_s_without, U_v_without
              ) -> GammaFit:
    """Estimate γ from two runs from the same start, rounds 0..T: one spending external data
    on `schedule`, one without.

    Both runs share the self-improvement dynamics (λ, α/β, b/k) and the start; the run with data
    adds γ. All six are fitted jointly to both runs, so γ's interval carries the uncertainty of
    the dynamics too."""
    arrays = [np.asarray(a, dtype=float) for a in (U_s_with, U_v_with, U_s_without, U_v_without)]
    n = arrays[0].size
    if any(a.ndim != 1 or a.size != n for a in arrays):
        raise ValueError("U_s and U_v with and without data must be 1-d arrays of one length")
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("U_s and U_v must be finite numbers")
    T = n - 1
    eta = schedule_shares(schedule, T)
    nan = float("nan")
    if eta.sum() == 0:
        return GammaFit(nan, nan, nan, nan, {}, False,
                        "the schedule spends no external data: gamma is not identified")
    t = np.arange(n, dtype=float)
    base = fit("coupled", {"solver": Series(t, arrays[2]), "verifier": Series(t, arrays[3])})
    if not base.converged:
        return GammaFit(nan, nan, nan, nan, {}, False,
                        f"the run without data does not fit the coupled model: {base.message}")
    p = base.params
    if not p["alpha_over_beta"] > 1:
        return GammaFit(nan, nan, nan, nan, {}, False,
                        f"alpha/beta = {p['alpha_over_beta']:.3g} <= 1 in the run without data")
    data = np.concatenate(arrays)
    none = np.zeros(T)

    def residuals(q):                          # q = λ, β/(α-β), b/k, U_s0, U_v0, γ
        lam, b_frac, g_inf, us0, uv0, g = q
        with_ = _run(us0, uv0, lam, b_frac, g_inf, g, eta)
        without = _run(us0, uv0, lam, b_frac, g_inf, 0.0, none)
        return np.concatenate([*with_, *without]) - data

    q0 = np.array([p["lambda"], 1 / (p["alpha_over_beta"] - 1), p["G_inf"],
                   p["U_s_inf"] + p["alpha_prime"], p["U_v_inf"] + p["beta_prime"], 0.0])
    costs = []
    for g in np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 61)]):
        q0[5] = g
        costs.append((float(np.sum(residuals(q0) ** 2)), g))
    q0[5] = min(costs)[1]
    lo = [1e-9, 0.0, -np.inf, -np.inf, -np.inf, 0.0]
    hi = [50.0, np.inf, np.inf, np.inf, np.inf, 1e4]
    res = optimize.least_squares(residuals, q0, bounds=(lo, hi), xtol=1e-12, ftol=1e-12)
    q, r = res.x, res.fun
    dof = r.size - q.size
    g = float(q[5])
    se = nan
    if dof > 0:
        J = res.jac
        norms = np.linalg.norm(J, axis=0)
        if np.all(norms > 0) and np.linalg.cond((J / norms).T @ (J / norms)) < 1e13:
            cov = float(r @ r) / dof * np.linalg.inv(J.T @ J)
            se = math.sqrt(cov[5, 5]) if cov[5, 5] >= 0 else nan
    q95 = float(stats.t.ppf(0.975, dof)) if dof > 0 else nan
    us, uv = _run(q[3], q[4], q[0], q[1], q[2], g, eta)
    r2 = {"solver": r_squared(arrays[0], us), "verifier": r_squared(arrays[1], uv)}
    message, ok = "", res.status > 0
    if g >= 1e4 * (1 - 1e-6):
        ok, message = False, "gamma ran to the edge of its range (1e4)"
    elif not math.isfinite(se):
        message = "no standard error: the data do not pin gamma down"
    return GammaFit(g, se, max(g - q95 * se, 0.0), g + q95 * se, r2, ok, message)


# ---------------------------------------------------------------------------------------------
# Prop. 5.1 on measured runs: do the arms share one limit?

@dataclass(frozen=True)
class LimitsTest:
    """Homogeneity of one quantity (a fitted limit) across arms. Its size is 5 % whatever the
    number of arms: a spread (max - min) against a fixed threshold rejects more often the more
    arms there are."""
    method: str
    statistic: float
    dof: tuple[float, ...]
    p: float


def limits_agree(values: dict[str, list[float]], stderr: dict[str, float] | None = None
                 ) -> LimitsTest | None:
    """Several seeds per arm: one-way ANOVA of the per-seed values. One value per arm: Cochran's Q,
    Σ w_i (x_i - x̄_w)² with w = 1/se² (the fits' standard errors), against χ²(arms - 1)."""
    arms = {a: np.asarray(v, dtype=float) for a, v in values.items()}
    arms = {a: v[np.isfinite(v)] for a, v in arms.items()}
    if len(arms) < 2:
        return None
    if all(v.size >= 2 for v in arms.values()):
        F, p = stats.f_oneway(*arms.values())
        n = sum(v.size for v in arms.values())
        return LimitsTest("one-way ANOVA over seeds", float(F), (len(arms) - 1, n - len(arms)),
                          float(p))
    se = np.array([(stderr or {}).get(a, math.nan) for a in arms], dtype=float)
    x = np.array([v[0] if v.size else math.nan for v in arms.values()])
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(se)) and np.all(se > 0)):
        return None
    w = 1 / se ** 2
    Q = float(np.sum(w * (x - np.sum(w * x) / np.sum(w)) ** 2))
    return LimitsTest("Cochran's Q on the fits' standard errors", Q, (len(arms) - 1,),
                      float(stats.chi2.sf(Q, len(arms) - 1)))


def simulate_identified(lam: float, alpha_over_beta: float, G_inf: float, U_s0: float, U_v0: float,
                        gamma: float, schedule: str | Sequence[float], T: int,
                        schedule_rounds: int | None = None) -> Trajectory:
    """`simulate` in the numbers a fit identifies (k = 1): λ = α - β, α/β, G∞ = b/k. The schedule
    covers rounds 1..schedule_rounds (a preset's "late" is that round); later rounds get none."""
    if not (math.isfinite(alpha_over_beta) and alpha_over_beta > 1):
        raise ValueError(f"need α/β > 1 (the solver learns faster), got {alpha_over_beta:g}")
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"need λ > 0, got {lam:g}")
    shares = schedule_shares(schedule, min(schedule_rounds or T, T))
    beta = lam / (alpha_over_beta - 1)
    return simulate(U_s0, U_v0, alpha_over_beta * beta, beta, 1.0, G_inf, gamma, list(shares), T)
