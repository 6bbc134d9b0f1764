"""The theory's view of a sweep: the dynamics fitted to the control arm, γ per arm against it,
each arm's end as compare_schedules predicts it, and the noise an arm's final value carries."""
from __future__ import annotations

import math

import numpy as np

from silab.sweep.arms import Arm
from silab.sweep.report import verdict


def _gamma_dict(g) -> dict:
    return {"gamma": g.gamma, "stderr": g.stderr, "lo": g.lo, "hi": g.hi, "r2": g.r2,
            "converged": g.converged, "message": g.message}


def pooled_gamma(fits: dict[str, dict]) -> tuple[float, str]:
    """One γ for all arms (the theory has one): inverse-variance mean of the converged per-arm
    fits, or their median when some have no standard error."""
    ok = [f for f in fits.values() if f["converged"] and math.isfinite(f["gamma"])]
    if not ok:
        return math.nan, "no arm's gamma fit converged"
    se = np.array([f["stderr"] for f in ok], dtype=float)
    g = np.array([f["gamma"] for f in ok])
    if np.all(np.isfinite(se)) and np.all(se > 0):
        w = 1 / se ** 2
        return float(np.sum(w * g) / np.sum(w)), f"inverse-variance mean of {len(ok)} arm fit(s)"
    return float(np.median(g)), f"median of {len(ok)} arm fit(s) (some without a standard error)"


def theory_view(arms: list[Arm], summary: dict, seeds: int) -> dict:
    """Fit the dynamics to the control arm, γ per arm, predict each arm's end, and compare."""
    from silab.theory import compare_schedules, fit, fit_gamma
    from silab.theory.data import Series

    none = summary["none"]
    T = none["rounds"]
    t = np.arange(T + 1, dtype=float)
    us0, uv0 = np.array(none["curve"]["U_s"]), np.array(none["curve"]["U_v"])
    view: dict = {"dynamics": None, "gamma": {}, "gamma_pooled": None, "predicted": {}, "verdict": ""}
    base = fit("coupled", {"solver": Series(t, us0), "verifier": Series(t, uv0)})
    p = base.params
    usable = base.converged and p.get("alpha_over_beta", 0) > 1 and math.isfinite(p.get("alpha_over_beta", math.nan))
    if base.converged:
        view["dynamics"] = {"lambda": p["lambda"], "alpha_over_beta": p["alpha_over_beta"],
                            "b_over_k": p["b_over_k"], "U_s_inf": p["U_s_inf"], "U_v_inf": p["U_v_inf"],
                            "r2": base.r2}
    problem = "" if usable else (
        f"the control arm does not fit the coupled model ({base.message or 'alpha/beta <= 1'})")
    data_arms = [a for a in arms if a.label != "none"]
    for arm in data_arms:
        s = summary[arm.label]
        try:
            g = fit_gamma(s["eta"], s["curve"]["U_s"], s["curve"]["U_v"], us0, uv0)
            view["gamma"][arm.label] = _gamma_dict(g)
        except ValueError as e:
            view["gamma"][arm.label] = {"gamma": math.nan, "converged": False, "message": str(e)}
    gamma, how = pooled_gamma(view["gamma"])
    view["gamma_pooled"], view["gamma_pooled_how"] = gamma, how
    if usable and math.isfinite(gamma):
        r, lam = p["alpha_over_beta"], p["lambda"]
        beta = lam / (r - 1)                     # k = 1: the data identify λ = k(α-β), α/β, b/k
        alpha = r * beta
        start = (p["U_s_inf"] + p["alpha_prime"], p["U_v_inf"] + p["beta_prime"])
        sims = compare_schedules(*start, alpha, beta, 1.0, p["b_over_k"], gamma, T,
                                 schedules=[a.spec if isinstance(a.spec, str) else list(a.spec) for a in arms])
        for arm, tr in zip(arms, sims.values()):
            view["predicted"][arm.label] = {"U_s": float(tr.U_s[-1]), "U_v": float(tr.U_v[-1]),
                                            "U_s_inf": tr.U_s_inf, "U_v_inf": tr.U_v_inf}
    elif not problem:
        problem = f"gamma is not identified ({how})"
    view["problem"] = problem
    view["noise"], view["noise_how"] = noise_scale(summary, arms, base, seeds)
    view["verdict"] = verdict(data_arms, summary, view)
    return view


def noise_scale(summary: dict, arms: list[Arm], base, seeds: int) -> tuple[dict, str]:
    """How much an arm's final U_s / U_v wobbles by chance: the seed spread of the mean when there
    are several seeds, else the control arm's scatter around its fitted curve."""
    if seeds > 1:
        out = {}
        for k in ("U_s", "U_v"):
            var = np.mean([np.var(summary[a.label]["final"][k]["values"], ddof=1) for a in arms])
            out[k] = float(math.sqrt(var / seeds))
        return out, f"standard error of an arm's mean over {seeds} seeds"
    none = summary["none"]
    t = np.arange(none["rounds"] + 1, dtype=float)
    curves = base.predict(t)
    out = {}
    for k, s in (("U_s", "solver"), ("U_v", "verifier")):
        y = np.array(none["curve"][k])
        yhat = curves.get(s, np.full(t.shape, np.nan))
        if np.all(np.isfinite(yhat)) and y.size > 3:   # per curve: a limit, an amplitude and λ fitted
            out[k] = float(np.sqrt(np.sum((y - yhat) ** 2) / (y.size - 3)))
        else:
            out[k] = float(np.std(np.diff(y)) / math.sqrt(2)) if y.size > 2 else math.nan
    return out, "one seed: the control arm's round-to-round scatter around its fitted curve"
