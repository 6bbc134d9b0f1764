"""How good is a fit, honestly: in-sample R² is cheap to get high, so each model is also asked to
forecast points it has not seen.

    heldout   fit on all but the last K points of every series, forecast those K
    rolling   rolling origin: fit on the first m points, forecast the next `horizon`, for every m
    linearity the paper's check of its linearised potential: finite-difference dG/dt against G is a
              line with slope -λ (they report R² > 0.8)
    shared    does one rate for solver and verifier (coupled) fit as well as a rate each (exp)?
              The models are nested, so an F test answers it (each series weighted by its own
              residual variance)
    limit     the capability limit U_s_inf with its interval, where the run saturates, the accuracy
              limit when the run has accuracies, and how the forecast of the limit moved as rounds
              arrived (fit on the first k rounds, k = 4..n)

`report(panel)` runs all of it for one panel; the command line and the JSON output read that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from silab.theory.data import Panel, Series
from silab.theory.models import MODELS, SEPARATE_SERIES, ModelFit, fit, fit_curve
from silab.theory.varpro import fit_curves

SATURATION = 0.05          # "saturated" = 95 % of the way from U_s(0) to U_s_inf
FIRST_K_MIN = 4            # the coupled model has 5 parameters over 2k points


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error and 95 % interval (NaN where unknown)."""
    value: float
    stderr: float = float("nan")
    lo: float = float("nan")
    hi: float = float("nan")

    @classmethod
    def of(cls, f: ModelFit, key: str) -> "Estimate":
        lo, hi = f.ci.get(key, (math.nan, math.nan))
        return cls(f.params[key], f.stderr.get(key, math.nan), lo, hi)


@dataclass(frozen=True)
class Heldout:
    mse: float | None                  # pooled over every held-out point of every series
    by_series: dict[str, float]
    message: str = ""


@dataclass(frozen=True)
class Linearity:
    slope: float                       # = -λ under the model
    intercept: float                   # = λ b/k
    r2: float
    n: int


@dataclass(frozen=True)
class SharedRate:
    """coupled (one λ) against exp on solver and verifier (one λ each): nested, 1 parameter apart."""
    lambda_shared: float
    lambda_solver: float
    lambda_verifier: float
    F: float
    p: float                           # small p: the data want separate rates
    dof: float = math.nan              # denominator degrees of freedom of the reference F


@dataclass(frozen=True)
class Rolling:
    horizon: int
    origins: list[float]               # last time each fit saw
    mse: dict[str, float | None]       # per model, pooled over all forecasts it could make
    n_forecasts: dict[str, int]
    n_flagged: dict[str, int]          # fits that produced numbers but did not converge cleanly

    @property
    def best(self) -> str | None:
        ok = {m: v for m, v in self.mse.items() if v is not None}
        return min(ok, key=ok.get) if ok else None


@dataclass(frozen=True)
class FirstK:
    """What the coupled model forecast from the first k points only (None: no clean fit yet)."""
    k: int
    U_s_inf: Estimate | None
    saturation_t: Estimate | None


@dataclass(frozen=True)
class Limit:
    U_s_inf: Estimate | None
    saturation_t: Estimate | None      # t at which U_s is 95 % of the way to U_s_inf
    accuracy_inf: Estimate | None
    by_first_k: list[FirstK]
    message: str = ""


@dataclass
class PanelReport:
    fits: dict[str, ModelFit]
    heldout: dict[str, Heldout]
    linearity: Linearity | None
    shared_rate: SharedRate | None
    rolling: Rolling | None
    limit: Limit
    n_points: dict[str, int]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------

def squared_errors(f: ModelFit, panel: Panel) -> dict[str, np.ndarray]:
    """Squared forecast errors of a fit on each of solver, verifier, gap present in `panel`."""
    out = {}
    for s in SEPARATE_SERIES:
        if s in panel and len(panel[s]):
            pred = f.predict(panel[s].t).get(s)
            if pred is not None:
                out[s] = (pred - panel[s].y) ** 2
    return out


def _pooled(errors: dict[str, np.ndarray]) -> float | None:
    if not errors:
        return None
    allerr = np.concatenate(list(errors.values()))
    return float(allerr.mean()) if allerr.size and np.all(np.isfinite(allerr)) else None


def heldout(model: str, panel: Panel, k: int) -> Heldout:
    """Fit on all but the last k points of each series; mean squared error on those k."""
    train = {s: Series(c.t[:-k], c.y[:-k]) for s, c in panel.items()}
    test = {s: Series(c.t[-k:], c.y[-k:]) for s, c in panel.items()}
    f = fit(model, train)
    if not f.params:
        return Heldout(None, {}, f.message or "the fit failed")
    errors = squared_errors(f, test)
    mse = _pooled(errors)
    return Heldout(mse, {s: float(e.mean()) for s, e in errors.items()},
                   "" if f.converged else f.message)


def linearity(gap: Series) -> Linearity | None:
    """Regress the finite-difference dG/dt on G at interval midpoints."""
    if len(gap) < 3:
        return None
    dgdt = np.diff(gap.y) / np.diff(gap.t)
    g_mid = 0.5 * (gap.y[1:] + gap.y[:-1])
    if np.ptp(g_mid) == 0:
        return None
    res = stats.linregress(g_mid, dgdt)
    return Linearity(float(res.slope), float(res.intercept), float(res.rvalue ** 2), len(dgdt))


def shared_rate(panel: Panel, coupled: ModelFit, exp: ModelFit) -> SharedRate | None:
    """F test of one shared rate (coupled, 5 parameters) against separate rates (exp, 6), each
    series weighted by its own residual variance (from the separate fits): pooling one variance
    over U_s and U_v lets the noisier curve decide, and the test's size drifts from 5 % to 1 % or
    14 % when their noise differs. With estimated weights the reference F(1, d) takes d from
    Welch-Satterthwaite over the two rates' variances (d = n - 6 when the noise is equal)."""
    if not (coupled.params and all(f"{s}.lambda" in exp.params for s in ("solver", "verifier"))):
        return None
    curves = [panel["solver"], panel["verifier"]]
    dofs = [len(c) - 3 for c in curves]
    if min(dofs) < 1:
        return None
    variances = []
    for name, c, d in zip(("solver", "verifier"), curves, dofs):
        resid = exp.predict(c.t)[name] - c.y
        variances.append(float(resid @ resid) / d)
    if not all(v > 0 and math.isfinite(v) for v in variances):
        return None
    scaled = [Series(c.t, c.y / math.sqrt(v)) for c, v in zip(curves, variances)]
    weighted = fit_curves("exp", scaled)                 # the shared rate, weighted
    if not math.isfinite(weighted.rss):
        return None
    n_dof = sum(dofs)                                    # = weighted RSS of the separate fits
    F = max(weighted.rss - n_dof, 0.0)
    se = [exp.stderr.get(f"{s}.lambda", math.nan) ** 2 for s in ("solver", "verifier")]
    d = (se[0] + se[1]) ** 2 / (se[0] ** 2 / dofs[0] + se[1] ** 2 / dofs[1])
    d = d if math.isfinite(d) and d > 0 else float(min(dofs))
    return SharedRate(float(weighted.theta[0]), exp.params["solver.lambda"],
                      exp.params["verifier.lambda"], F, float(stats.f.sf(F, 1, d)), float(d))


def rolling(panel: Panel, models=MODELS, horizon: int = 1, first: int | None = None) -> Rolling | None:
    """Rolling-origin forecast comparison over the union time grid of solver, verifier, gap."""
    grid = np.unique(np.concatenate([panel[s].t for s in SEPARATE_SERIES if s in panel]))
    first = max(6, len(grid) // 2) if first is None else first
    last = len(grid) - horizon
    if first > last:
        return None
    origins = [float(grid[m - 1]) for m in range(first, last + 1)]
    errors: dict[str, list[np.ndarray]] = {m: [] for m in models}
    flagged = {m: 0 for m in models}
    for m in range(first, last + 1):
        cut, until = grid[m - 1], grid[m - 1 + horizon]
        train = {s: c.before(cut) for s, c in panel.items()}
        test = {}
        for s, c in panel.items():
            keep = (c.t > cut) & (c.t <= until)
            test[s] = Series(c.t[keep], c.y[keep])
        for model in models:
            f = fit(model, train)
            if not f.params:
                continue
            flagged[model] += not f.converged
            errors[model].extend(squared_errors(f, test).values())
    mse = {}
    count = {}
    for model, errs in errors.items():
        allerr = np.concatenate(errs) if errs else np.empty(0)
        count[model] = int(allerr.size)
        mse[model] = float(allerr.mean()) if allerr.size and np.all(np.isfinite(allerr)) else None
    return Rolling(horizon, origins, mse, count, flagged)


def saturation(f: ModelFit) -> Estimate | None:
    """t = ln(1/0.05)/λ, with the interval mapped through λ's (the map is monotone)."""
    lam = f.params.get("lambda")
    if lam is None or not lam > 0:
        return None
    c = math.log(1 / SATURATION)
    se = f.stderr["lambda"] * c / lam ** 2
    lo, hi = f.ci["lambda"]
    return Estimate(c / lam, se, c / hi if hi > 0 else math.nan, c / lo if lo > 0 else math.inf)


def accuracy_limit(acc: Series) -> tuple[Estimate | None, str]:
    """Accuracy rising (or falling) to a limit, fitted with one exponential."""
    f = fit_curve("exp", acc)
    if not f.params:
        return None, f"accuracy: {f.message}"
    return Estimate.of(f, "Y_inf"), ("" if f.converged else f"accuracy: {f.message}")


def limit(panel: Panel, coupled: ModelFit | None = None) -> Limit:
    """U_s_inf and saturation from the coupled model, the accuracy limit, and both as forecast
    from the first k = 4..n points: how early the run's end could have been seen."""
    coupled = coupled or fit("coupled", panel)
    messages = []
    us = Estimate.of(coupled, "U_s_inf") if coupled.params else None
    if not coupled.converged:
        messages.append(f"coupled: {coupled.message}")
    acc = None
    if "accuracy" in panel:
        acc, why = accuracy_limit(panel["accuracy"])
        if why:
            messages.append(why)
    n = min(len(panel["solver"]), len(panel["verifier"]))
    by_k = []
    for k in range(FIRST_K_MIN, n + 1):
        fk = fit("coupled", {s: panel[s].head(k) for s in ("solver", "verifier")})
        if fk.converged:
            by_k.append(FirstK(k, Estimate.of(fk, "U_s_inf"), saturation(fk)))
        else:
            by_k.append(FirstK(k, None, None))
    return Limit(us, saturation(coupled) if coupled.converged else None, acc, by_k,
                 "; ".join(messages))


def _gap_note(panel: Panel) -> str | None:
    """The coupled model predicts G = U_s - U_v; say so when the data's gap is not that."""
    s, v, g = (panel[k] for k in ("solver", "verifier", "gap"))
    if not (np.array_equal(s.t, v.t) and np.array_equal(s.t, g.t)):
        return None
    off = g.y - (s.y - v.y)
    if abs(off.mean()) <= 0.01 * max(np.ptp(g.y), 1e-12):
        return None
    return (f"gap differs from solver - verifier by {off.mean():+.3g} on average (sd {off.std():.2g}); "
            "coupled forecasts the gap as U_s - U_v, so its gap R² and held-out error carry that offset")


def report(panel: Panel, models=MODELS, holdout: int = 0, with_rolling: bool = True) -> PanelReport:
    """Every model on one panel, with goodness of fit, forecasts, linearity and the limit."""
    fits = {m: fit(m, panel) for m in models}
    held = {m: heldout(m, panel, holdout) for m in models} if holdout > 0 else {}
    lin = linearity(panel["gap"])
    shared = shared_rate(panel, fits["coupled"], fits["exp"]) if {"coupled", "exp"} <= set(fits) \
        else None
    roll = rolling(panel, models) if with_rolling else None
    lim = limit(panel, fits.get("coupled"))
    notes = [n for n in [_gap_note(panel)] if n]
    return PanelReport(fits, held, lin, shared, roll, lim, {s: len(c) for s, c in panel.items()},
                       notes)
