"""Cross-improvement: schedules, the discrete dynamics, Prop. 5.1 and fitting γ."""
import math

import numpy as np
import pytest

from silab.theory import compare_schedules, fit_gamma, schedule_shares, simulate

ALPHA, BETA, K, B, US0, UV0 = 0.5, 0.2, 1.2, 0.06, 1.1, 0.5


def test_named_schedules_spend_the_whole_set():
    T = 8
    early, uniform, late, none = (schedule_shares(s, T) for s in ("early", "uniform", "late", "none"))
    assert early.tolist() == [1.0] + [0.0] * 7
    assert late.tolist() == [0.0] * 7 + [1.0]
    assert uniform == pytest.approx(np.full(T, 1 / 8))
    assert none.sum() == 0
    assert schedule_shares([0.25, 0.5], 4).tolist() == [0.25, 0.5, 0.0, 0.0]


@pytest.mark.parametrize("schedule, T, says", [
    ([0.5, -0.1], 4, "negative"),
    ([0.7, 0.6], 4, "add up to"),
    ([0.1] * 5, 4, "lists 5 shares but the run has 4 rounds"),
    ("sometimes", 4, "unknown schedule"),
    ([0.1, float("nan")], 4, "finite"),
    (["a"], 4, "numbers"),
    ("early", 0, "T must be"),
])
def test_bad_schedules_raise_a_clear_value_error(schedule, T, says):
    with pytest.raises(ValueError, match=says):
        schedule_shares(schedule, T)


def test_without_data_the_simulation_is_prop_3_1_at_whole_rounds():
    tr = simulate(US0, UV0, ALPHA, BETA, K, B, gamma=2.0, schedule="none", T=12)
    lam = K * (ALPHA - BETA)
    delta = US0 - UV0 - B / K
    t = np.arange(13.0)
    assert tr.U_s == pytest.approx(ALPHA * delta / (ALPHA - BETA) * (np.exp(-lam * t) - 1) + US0)
    assert tr.U_v == pytest.approx(BETA * delta / (ALPHA - BETA) * (np.exp(-lam * t) - 1) + UV0)
    assert tr.G == pytest.approx(delta * np.exp(-lam * t) + B / K)
    assert tr.U_s_inf == pytest.approx(US0 - ALPHA * delta / (ALPHA - BETA))


def test_each_lift_moves_the_limit_by_what_the_conserved_quantity_predicts():
    """Self-improvement conserves β U_s - α U_v; a lift changes it by α U_v γη/(1+γη)."""
    gamma, eta = 0.7, [0.1, 0.0, 0.3, 0.2, 0.0, 0.4]
    base = simulate(US0, UV0, ALPHA, BETA, K, B, gamma, "none", 8)
    tr = simulate(US0, UV0, ALPHA, BETA, K, B, gamma, eta, 8)
    gain = sum(tr.U_v[t - 1] * gamma * e / (1 + gamma * e) for t, e in enumerate(tr.eta, 1))
    assert tr.U_s_inf == pytest.approx(base.U_s_inf - ALPHA / (ALPHA - BETA) * gain, rel=1e-12)
    invariant = BETA * tr.U_s - ALPHA * tr.U_v
    assert invariant[-1] == pytest.approx(invariant[-2])          # no data in rounds 7, 8


def test_prop_5_1_when_the_verifier_moves_only_with_external_data():
    """β = 0: the limit depends on the shares only through Π(1+γη_t) ≈ 1 + γΣη_t."""
    gamma, T = 0.1, 10
    runs = compare_schedules(US0, UV0, ALPHA, 0.0, K, B, gamma, T)
    limits = {name: tr.U_s_inf for name, tr in runs.items()}
    assert limits["early"] == pytest.approx(limits["late"], rel=1e-12)
    effect = limits["none"] - limits["early"]
    assert effect > 0
    assert abs(limits["uniform"] - limits["early"]) < 0.1 * effect      # second order in γ
    expected_uv = UV0 / (1 + gamma)                                       # all lifts compound
    assert runs["early"].U_v[-1] == pytest.approx(expected_uv)
    assert runs["late"].U_v[-1] == pytest.approx(expected_uv)


def test_when_the_verifier_also_self_improves_early_data_buy_more():
    """β > 0: U_v falls over the rounds, so a share spent early meets a larger U_v."""
    runs = compare_schedules(US0, UV0, ALPHA, BETA, K, B, 0.3, 10)
    assert runs["early"].U_s_inf < runs["uniform"].U_s_inf < runs["late"].U_s_inf
    assert runs["late"].U_s_inf < runs["none"].U_s_inf


@pytest.mark.parametrize("kw, says", [
    (dict(alpha=0.2, beta=0.5), "alpha > beta"),
    (dict(k=0.0), "k > 0"),
    (dict(gamma=-1.0), "gamma"),
    (dict(U_s0=float("nan")), "finite"),
])
def test_simulate_rejects_parameters_outside_the_model(kw, says):
    args = dict(U_s0=US0, U_v0=UV0, alpha=ALPHA, beta=BETA, k=K, b=B, gamma=0.5,
                schedule="early", T=5)
    args.update(kw)
    with pytest.raises(ValueError, match=says):
        simulate(**args)


def test_fit_gamma_recovers_gamma_from_two_noisy_runs():
    true_gamma, T, noise = 0.8, 12, 0.004
    with_ = simulate(US0, UV0, ALPHA, BETA, K, B, true_gamma, "uniform", T)
    without = simulate(US0, UV0, ALPHA, BETA, K, B, 0.0, "none", T)
    covered, estimates = 0, []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        noisy = [a + noise * rng.standard_normal(a.size)
                 for a in (with_.U_s, with_.U_v, without.U_s, without.U_v)]
        f = fit_gamma("uniform", *noisy)
        assert f.converged, f.message
        covered += f.lo <= true_gamma <= f.hi
        estimates.append(f.gamma)
    assert covered >= 10
    assert np.mean(estimates) == pytest.approx(true_gamma, rel=0.05)


def test_fit_gamma_says_when_gamma_is_not_identified():
    run = simulate(US0, UV0, ALPHA, BETA, K, B, 0.0, "none", 8)
    f = fit_gamma("none", run.U_s, run.U_v, run.U_s, run.U_v)
    assert not f.converged and math.isnan(f.gamma) and "no external data" in f.message
    with pytest.raises(ValueError, match="one length"):
        fit_gamma("early", run.U_s, run.U_v[:-1], run.U_s, run.U_v)


@pytest.mark.parametrize("n_arms", [2, 4, 6])
def test_limits_test_keeps_its_size_whatever_the_number_of_arms(n_arms):
    """Equal limits: 5 % rejections with 3 seeds per arm (ANOVA) and with one fit per arm and
    unequal standard errors (Cochran's Q); the old rule, spread > 2√2·se, drifts with the arms."""
    from silab.theory.cross import limits_agree

    rng = np.random.default_rng(n_arms)
    trials, anova, cochran, spread = 2000, 0, 0, 0
    se = {f"a{i}": 0.01 * (1 + i) for i in range(n_arms)}
    for _ in range(trials):
        seeds = {a: 0.4 + 0.02 * rng.standard_normal(3) for a in se}
        anova += limits_agree(seeds).p < 0.05
        one = {a: [0.4 + s * rng.standard_normal()] for a, s in se.items()}
        cochran += limits_agree(one, se).p < 0.05
        means = [float(np.mean(v)) for v in seeds.values()]
        spread += max(means) - min(means) > 2 * math.sqrt(2) * 0.02 / math.sqrt(3)
    assert 0.035 <= anova / trials <= 0.065
    assert 0.035 <= cochran / trials <= 0.065
    if n_arms == 6:
        assert spread / trials > 0.1       # why the sweep no longer judges by the spread


def test_simulate_identified_without_data_is_the_coupled_curve():
    """The sandbox's numbers (λ, α/β, G∞, U_s0, U_v0): with γ = 0 the rounds lie on Prop. 3.1."""
    from silab.theory.cross import simulate_identified

    lam, r, g_inf, us0, uv0 = 0.3, 2.5, 0.4, 1.5, 0.6
    tr = simulate_identified(lam, r, g_inf, us0, uv0, 0.0, "none", 15)
    delta0 = us0 - uv0 - g_inf                       # the gap's distance from its limit
    us_inf = us0 - r / (r - 1) * delta0
    t = np.arange(16)
    assert np.allclose(tr.U_s, us_inf + (us0 - us_inf) * np.exp(-lam * t))
    assert np.allclose(tr.G, g_inf + delta0 * np.exp(-lam * t))
    lifted = simulate_identified(lam, r, g_inf, us0, uv0, 1.0, "late", 15, schedule_rounds=10)
    assert lifted.eta[9] == 1.0 and lifted.eta.sum() == 1.0 and lifted.U_s_inf < tr.U_s_inf
    with pytest.raises(ValueError, match="α/β > 1"):
        simulate_identified(lam, 0.9, g_inf, us0, uv0, 0.0, "none", 5)
