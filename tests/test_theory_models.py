"""Fitting: exact recovery on clean curves, honest intervals on noisy ones, honest failures."""
import math

import numpy as np
import pytest

from silab.theory import Series, fit, fit_run, heldout, limit, linearity, rolling, shared_rate
from silab.theory.evaluate import saturation

# The paper's physical parameters (Prop. 3.1); what the data identify is derived below by hand.
ALPHA, BETA, K, B, US0, UV0 = 0.5, 0.2, 1.2, 0.06, 1.1, 0.5


def coupled_truth(alpha=ALPHA, beta=BETA, k=K, b=B, us0=US0, uv0=UV0):
    lam = k * (alpha - beta)
    delta = us0 - uv0 - b / k
    a_p, b_p = alpha * delta / (alpha - beta), beta * delta / (alpha - beta)
    return dict(lam=lam, delta=delta, a_p=a_p, b_p=b_p, us_inf=us0 - a_p, uv_inf=uv0 - b_p,
                g_inf=b / k, ratio=alpha / beta)


def coupled_panel(t, noise=0.0, seed=0, **kw):
    p = coupled_truth(**kw)
    rng = np.random.default_rng(seed)
    s = p["us_inf"] + p["a_p"] * np.exp(-p["lam"] * t) + noise * rng.standard_normal(t.size)
    v = p["uv_inf"] + p["b_p"] * np.exp(-p["lam"] * t) + noise * rng.standard_normal(t.size)
    return {"solver": Series(t, s), "verifier": Series(t, v), "gap": Series(t, s - v)}, p


def test_coupled_recovers_prop_3_1_parameters_from_clean_curves():
    panel, p = coupled_panel(np.arange(15.0))
    f = fit("coupled", panel)
    assert f.converged, f.message
    expect = {"lambda": p["lam"], "alpha_prime": p["a_p"], "beta_prime": p["b_p"],
              "U_s_inf": p["us_inf"], "U_v_inf": p["uv_inf"], "G_inf": p["g_inf"],
              "b_over_k": B / K, "alpha_over_beta": ALPHA / BETA, "delta": p["delta"],
              "k_alpha_minus_beta": K * (ALPHA - BETA)}
    for key, value in expect.items():
        assert f.params[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    # one rate for all three curves, and the gap is U_s - U_v
    t = np.array([0.0, 3.0, 50.0])
    pred = f.predict(t)
    assert pred["gap"] == pytest.approx(pred["solver"] - pred["verifier"])
    assert pred["solver"][-1] == pytest.approx(p["us_inf"], abs=1e-6)
    assert all(f.r2[s] == pytest.approx(1.0) for s in ("solver", "verifier", "gap"))


def test_coupled_intervals_cover_the_truth_on_noisy_curves():
    """95 % intervals for λ and U_s_inf contain the generating values in >= 90 % of 60 seeds."""
    t = np.arange(1, 21) * 0.5
    hits = {"lambda": 0, "U_s_inf": 0}
    n_ok = 0
    for seed in range(60):
        panel, p = coupled_panel(t, noise=0.015, seed=seed)
        f = fit("coupled", panel)
        if not f.converged:
            continue
        n_ok += 1
        for key, true in (("lambda", p["lam"]), ("U_s_inf", p["us_inf"])):
            lo, hi = f.ci[key]
            hits[key] += lo <= true <= hi
    assert n_ok >= 57
    for key, h in hits.items():
        assert h / n_ok >= 0.90, (key, h, n_ok)


@pytest.mark.parametrize("model, make, truth", [
    ("exp", lambda t: 0.2 + 0.7 * np.exp(-0.4 * t), {"Y_inf": 0.2, "c": 0.7, "lambda": 0.4}),
    ("power", lambda t: 0.1 + 2.0 * (t + 1.5) ** -1.3, {"Y_inf": 0.1, "c": 2.0, "tau": 1.5, "p": 1.3}),
    ("exp2", lambda t: 0.1 + 0.5 * np.exp(-0.15 * t) + 0.6 * np.exp(-1.5 * t),
     {"Y_inf": 0.1, "c1": 0.5, "lambda1": 0.15, "c2": 0.6, "lambda2": 1.5}),
])
def test_separate_models_recover_clean_curves(model, make, truth):
    t = np.linspace(0, 12, 25)
    y = make(t)
    panel = {"solver": Series(t, y), "verifier": Series(t, 0.5 * y), "gap": Series(t, 0.5 * y)}
    f = fit(model, panel)
    assert f.converged, f.message
    for key, value in truth.items():
        assert f.params[f"solver.{key}"] == pytest.approx(value, rel=1e-4), key
    assert f.params["verifier.Y_inf"] == pytest.approx(0.5 * truth["Y_inf"], rel=1e-4)
    assert f.r2["solver"] == pytest.approx(1.0)


def test_too_few_points_is_a_clear_failure_not_an_exception():
    t = np.array([0.0, 1.0])
    panel = {s: Series(t, np.array([1.0, 0.8])) for s in ("solver", "verifier", "gap")}
    for model in ("coupled", "exp", "power", "exp2"):
        f = fit(model, panel)
        assert not f.converged
        assert "not enough points" in f.message
        assert np.all(np.isnan(f.predict([0.0, 5.0])["solver"]))


def test_a_straight_line_is_flagged_not_given_a_limit():
    """No curvature means no saturation: the exp rate sits at its floor and the fit says so."""
    t = np.arange(12.0)
    y = 1.0 - 0.05 * t
    f = fit("exp", {s: Series(t, y) for s in ("solver", "verifier", "gap")})
    assert not f.converged
    assert "no clear saturation" in f.message


def test_linearity_of_dG_dt_against_G_has_slope_minus_lambda():
    h = 0.5
    panel, p = coupled_panel(np.arange(20) * h)
    lin = linearity(panel["gap"])
    # midpoint differences of δe^{-λt}+G_inf lie exactly on a line of slope -(2/h) tanh(λh/2)
    assert lin.slope == pytest.approx(-(2 / h) * math.tanh(p["lam"] * h / 2), rel=1e-9)
    assert lin.intercept == pytest.approx(-lin.slope * p["g_inf"], rel=1e-9)
    assert lin.r2 == pytest.approx(1.0)
    assert lin.n == 19


def test_heldout_and_rolling_forecasts():
    panel, _ = coupled_panel(np.arange(20.0))
    h = heldout("coupled", panel, 5)
    assert h.mse is not None and h.mse < 1e-12
    assert set(h.by_series) == {"solver", "verifier", "gap"}
    # a power law cannot be an exponential exactly: its forecasts are worse than the true model's
    assert heldout("power", panel, 5).mse > h.mse
    roll = rolling(panel, ("coupled", "exp"))
    assert len(roll.origins) == 10 and roll.origins[0] == 9.0
    assert roll.n_forecasts["coupled"] == 10 * 3
    assert roll.mse["coupled"] < 1e-12 and roll.mse["exp"] < 1e-12


def test_saturation_time_follows_the_rate():
    panel, p = coupled_panel(np.arange(15.0), noise=0.01)
    f = fit("coupled", panel)
    sat = saturation(f)
    assert sat.value == pytest.approx(math.log(20) / f.params["lambda"])
    lo, hi = f.ci["lambda"]
    assert sat.lo == pytest.approx(math.log(20) / hi) and sat.hi == pytest.approx(math.log(20) / lo)


def _records(n, noise=0.0, seed=0, acc=True):
    panel, _ = coupled_panel(np.arange(float(n)), noise=noise, seed=seed)
    out = []
    for i in range(n):
        r = {"round": i, "U_s": panel["solver"].y[i], "U_v": panel["verifier"].y[i],
             "G": panel["gap"].y[i]}
        if acc:
            r["test_acc"] = 0.8 - 0.5 * math.exp(-0.3 * i)
        out.append(r)
    return out


def test_fit_run_for_the_ui():
    p = coupled_truth()
    s = fit_run(_records(12, noise=0.005))
    assert s.ok, s.message
    for key, true in (("lambda", p["lam"]), ("U_s_inf", p["us_inf"]), ("U_v_inf", p["uv_inf"]),
                      ("G_inf", p["g_inf"]), ("alpha_over_beta", p["ratio"])):
        e = s.params[key]
        assert e.lo < e.value < e.hi
        assert abs(e.value - true) < 4 * e.stderr, key
    assert s.accuracy_inf.value == pytest.approx(0.8, abs=1e-6)
    assert s.heldout_mse is not None and s.heldout_mse < 1e-3
    curves = s.predict(np.linspace(0, 60, 7))
    assert curves["solver"].shape == (7,)
    assert curves["solver"][-1] == pytest.approx(s.params["U_s_inf"].value, abs=1e-6)


@pytest.mark.parametrize("records", [
    [], None, _records(3), [{"round": 0}], [{"round": 0, "U_s": "x", "U_v": 1}] * 6,
    [{"round": i, "U_s": float("nan"), "U_v": 1.0, "G": 0} for i in range(6)],
    [{"round": 0, "U_s": 1, "U_v": 0.5}] * 8,            # one round repeated
    [1, "two", None],
])
def test_fit_run_never_raises_on_short_or_broken_input(records):
    s = fit_run(records)
    assert not s.ok
    assert s.message
    assert np.all(np.isnan(s.predict([0.0, 1.0])["solver"]))


def test_fit_run_flat_curves_do_not_raise():
    recs = [{"round": i, "U_s": 1.0, "U_v": 0.5, "G": 0.5} for i in range(8)]
    s = fit_run(recs)
    assert not s.ok and "no standard errors" in s.message


def test_fit_run_refits_twenty_noisy_rounds_the_same_way():
    """The lab refits after every round: the same records give the same numbers, near the truth.
    How long it takes is a figure of bench/bench_fit.py ("fit_run, the UI call"), not a test."""
    recs = _records(20, noise=0.01)
    first, again = fit_run(recs), fit_run(recs)
    assert first.ok, first.message
    lam = first.params["lambda"]
    assert abs(lam.value - coupled_truth()["lam"]) < 4 * lam.stderr
    assert {k: e.value for k, e in first.params.items()} == {k: e.value for k, e in again.params.items()}


def test_limit_forecast_from_the_first_k_points():
    t = np.arange(12.0)
    panel, p = coupled_panel(t)
    panel["accuracy"] = Series(t, 0.85 - 0.4 * np.exp(-0.5 * t))
    lim = limit(panel)
    assert [f.k for f in lim.by_first_k] == list(range(4, 13))
    for f in lim.by_first_k:                     # clean curves: every prefix already knows the end
        assert f.U_s_inf.value == pytest.approx(p["us_inf"], rel=1e-6)
        assert f.saturation_t.value == pytest.approx(math.log(20) / p["lam"], rel=1e-6)
    assert lim.accuracy_inf.value == pytest.approx(0.85, rel=1e-6)


def test_shared_rate_test_tells_one_rate_from_two():
    t = np.arange(1, 21) * 0.5
    same, _ = coupled_panel(t, noise=0.01, seed=3)
    sh = shared_rate(same, fit("coupled", same), fit("exp", same))
    assert sh.p > 0.01
    rng = np.random.default_rng(3)
    s = 0.2 + 0.8 * np.exp(-0.4 * t) + 0.01 * rng.standard_normal(t.size)
    v = 0.1 + 0.3 * np.exp(-0.2 * t) + 0.01 * rng.standard_normal(t.size)
    two = {"solver": Series(t, s), "verifier": Series(t, v), "gap": Series(t, s - v)}
    sh = shared_rate(two, fit("coupled", two), fit("exp", two))
    assert sh.p < 1e-6
    assert sh.lambda_solver == pytest.approx(0.4, rel=0.15)
    assert sh.lambda_verifier == pytest.approx(0.2, rel=0.3)


@pytest.mark.parametrize("noise", [(0.005, 0.04), (0.04, 0.005)])
def test_shared_rate_test_keeps_its_size_when_the_noise_differs(noise):
    """Under one true rate the test rejects about 5 % of the time, whichever curve is noisier
    (one pooled variance gave 1 % and 14 % on these curves)."""
    rng = np.random.default_rng(7)
    t = np.arange(11.0)
    rejected, trials = 0, 160
    for _ in range(trials):
        s = 1.0 + 2.0 * np.exp(-0.4 * t) + rng.normal(0, noise[0], t.size)
        v = 0.5 + 1.0 * np.exp(-0.4 * t) + rng.normal(0, noise[1], t.size)
        panel = {"solver": Series(t, s), "verifier": Series(t, v)}
        sh = shared_rate(panel, fit("coupled", panel), fit("exp", panel))
        rejected += sh.p < 0.05
    assert 0.015 <= rejected / trials <= 0.095
