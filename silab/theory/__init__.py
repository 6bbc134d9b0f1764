"""silab.theory: the solver-verifier dynamics of Sun et al. (arXiv 2507.00075) as a library.

numpy and scipy only. The engine, the UI and `silab fit` share it.

For the UI, after every round (cheap, never raises):

    s = fit_run(records)            # records: the rounds.jsonl dicts so far
    s.ok, s.message                 # False + "not enough rounds: 3 of 4 needed", or a fit problem
    s.params["lambda"]              # Estimate(value, stderr, lo, hi), 95 % interval; also U_s_inf,
                                    #   U_v_inf, G_inf, alpha_over_beta, alpha_prime, beta_prime,
                                    #   delta, b_over_k, k_alpha_minus_beta
    s.r2["solver"], s.heldout_mse   # in-sample R² per series; error forecasting the last round
    s.saturation_t                  # round by which U_s is 95 % of the way to its limit
    s.accuracy_inf                  # test_acc's limit (one exponential), when recorded
    s.predict(t)                    # {"solver", "verifier", "gap"} curves for plotting to the limit

Fitting and comparing models (what `silab fit` prints):

    panels = load(path)                         # run folder / rounds.jsonl / long CSV
    f = fit("coupled" | "exp" | "power" | "exp2", panel)  # ModelFit: params, stderr, ci, r2,
                                                          #   converged, message, predict(t)
    report(panel, models, holdout=K)            # all models + held-out, rolling, linearity,
                                                #   shared-rate F test, limit

Cross-improvement (Sec. 5; for `silab sweep`):

    schedule_shares("early" | "uniform" | "late" | "none" | [η_1, ...], T) -> np.ndarray
    simulate(U_s0, U_v0, alpha, beta, k, b, gamma, schedule, T) -> Trajectory
    compare_schedules(U_s0, U_v0, alpha, beta, k, b, gamma, T) -> {schedule: Trajectory}
    fit_gamma(schedule, U_s_with, U_v_with, U_s_without, U_v_without) -> GammaFit
"""
from silab.theory.cross import (GammaFit, Trajectory, compare_schedules, fit_gamma,
                                schedule_shares, simulate)
from silab.theory.data import Series, load, panel_from_records
from silab.theory.evaluate import (Estimate, FirstK, Heldout, Limit, Linearity, PanelReport,
                                   Rolling, SharedRate, heldout, limit, linearity, report, rolling,
                                   shared_rate)
from silab.theory.models import MODELS, ModelFit, fit, fit_curve
from silab.theory.summary import Summary, fit_run

__all__ = [
    "MODELS", "Estimate", "FirstK", "GammaFit", "Heldout", "Limit", "Linearity", "ModelFit",
    "PanelReport", "Rolling", "Series", "SharedRate", "Summary", "Trajectory",
    "compare_schedules", "fit", "fit_curve", "fit_gamma", "fit_run", "heldout", "limit",
    "linearity", "load", "panel_from_records", "report", "rolling", "schedule_shares",
    "shared_rate", "simulate",
]
