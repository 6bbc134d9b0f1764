"""`silab sweep`'s words: the Prop. 5.1 verdict, the pass@k trend and the table (from the result
object that --json prints and SWEEP/sweep.json keeps)."""
from __future__ import annotations

import math

import numpy as np


def pass_k_trend(p: dict) -> str:
    """One line on what pass@k did from round 0 to the last round (the paper: small k rises, large
    k falls as diversity is lost)."""
    ks = list(p["first"])
    delta = {k: p["last"][k] - p["first"][k] for k in ks}
    lo, hi = ks[0], ks[-1]
    if len(ks) == 1:
        return f"pass@{lo} {delta[lo]:+.3f}"
    small = "rises" if delta[lo] > 0 else "falls" if delta[lo] < 0 else "stays"
    large = "rises" if delta[hi] > 0 else "falls" if delta[hi] < 0 else "stays"
    if delta[lo] > 0 and delta[hi] < 0:
        note = "the paper's pattern: sharper but less diverse"
    elif delta[lo] > 0:
        note = f"pass@{hi} ends no lower than at round 0" + (", the gain shrinking with k" if delta[hi] < delta[lo] else "")
    else:
        note = "not the paper's pattern"
    curve = (p.get("curve") or {}).get(hi)
    if curve and max(curve) > curve[-1]:
        peak = int(np.argmax(curve))
        note += f"; pass@{hi} peaked at round {peak} ({curve[peak]:.3f}) and ends {curve[peak] - curve[-1]:.3f} below it"
    return f"pass@{lo} {small} ({delta[lo]:+.3f}), pass@{hi} {large} ({delta[hi]:+.3f}): {note}"


def verdict(data_arms: list, summary: dict, view: dict) -> str:
    """Plain words: do the arms share one limit U_s∞ (Prop. 5.1) or differ as β > 0 predicts?"""
    from silab.theory.cross import limits_agree

    if len(data_arms) < 2:
        return "one arm with external data: nothing to compare schedules with (give two or more)."
    labels = [a.label for a in data_arms]
    words = ["Prop. 5.1 makes the limit U_s∞ schedule-free, not the final-round U_s (data spent in "
             "round t has T - t rounds to reach the solver), and only to first order: exactly only "
             "as β → 0 with small γ; with β = 0 the limit still depends on Π_t (1 + γη_t)."]
    lim = {a: summary[a]["limits"]["U_s_inf"] for a in labels
           if (summary[a].get("limits") or {}).get("U_s_inf")}
    measured_order = sorted(lim, key=lambda a: lim[a]["mean"])
    if len(lim) < 2:
        words.append("The data arms' U_s∞ could not be fitted (too few rounds, or no saturation yet): "
                     "no test of Prop. 5.1 here; run more rounds.")
        view["limits_test"] = None
    else:
        words.append("Fitted U_s∞: " + ", ".join(
            f"{a} {lim[a]['mean']:.4f} [{_num(lim[a]['lo']):.4f}, {_num(lim[a]['hi']):.4f}]"
            for a in lim) + ".")
        test = limits_agree({a: lim[a]["values"] for a in lim},
                            {a: _num(lim[a]["stderr"]) for a in lim})
        view["limits_test"] = None if test is None else {
            "method": test.method, "statistic": test.statistic, "dof": list(test.dof), "p": test.p}
        if test is None:
            words.append("No standard errors for the limits: cannot test whether they agree.")
        elif test.p < 0.05:
            words.append(f"They differ ({test.method}, {len(lim)} arms: p = {test.p:.2g}): the runs do "
                         f"not side with Prop. 5.1 (order {' < '.join(measured_order)}).")
        else:
            words.append(f"They agree within noise ({test.method}, {len(lim)} arms: p = {test.p:.2g}): "
                         "consistent with Prop. 5.1.")
        if test is not None and test.method.startswith("Cochran"):
            words.append("(One seed: the arms share their first rounds, so their fits are not "
                         "independent; --seeds K >= 2 tests over seeds.)")
    pred = view["predicted"]
    if pred and len(lim) >= 2:
        p = {a: pred[a]["U_s_inf"] for a in labels}
        p_order = sorted(labels, key=p.get)
        words.append(f"The fitted β > 0 dynamics predicts limits spread by {max(p.values()) - min(p.values()):.4f} "
                     f"(lowest: {p_order[0]}; measured lowest: {measured_order[0]}).")
    final = {a: summary[a]["final"]["U_s"]["mean"] for a in labels}
    words.append(f"(Final-round U_s, for reference, spans {max(final.values()) - min(final.values()):.4f}.)")
    gammas = [g for g in view["gamma"].values() if g.get("converged") and g.get("lo") is not None]
    if gammas and all(g["lo"] <= 0 for g in gammas):
        words.append("Every arm's γ interval reaches 0: the pool's lift of the verifier is not measurably "
                     "above zero here, which leaves little for any schedule to change.")
    if view.get("problem"):
        words.append(f"(No theory prediction: {view['problem']}.)")
    return " ".join(words)


# --- output ----------------------------------------------------------------------------------

def _num(x) -> float:
    """sweep.json writes NaN as null; formatting reads it back as NaN."""
    return math.nan if x is None else x


def _fmt(s: dict, spec: str) -> str:
    text = format(s["mean"], spec)
    return text + (f" ± {format(s['sd'], spec.lstrip('+'))}" if s["sd"] is not None else "")


def render(result: dict) -> str:
    """The table and the theory's view, from the result object (as printed by --json)."""
    arms, th = result["arms"], result["theory"]
    seeds = len(result["seeds"])
    lines = [f"sweep {result['out']}: profile {result['profile']}, rounds 0..{result['rounds']}, "
             f"seed(s) {', '.join(map(str, result['seeds']))}, external pool {result['n_external']}",
             "", "final round" + (f" (mean ± sd over {seeds} seeds)" if seeds > 1 else "") + ":"]
    w = max(8, *(len(a) for a in arms))
    lines.append(f"{'arm':<{w}}  {'external':>8}  {'test_acc':>14}  {'greedy':>14}  {'U_s':>14}  "
                 f"{'U_v':>14}  {'G':>14}")
    for name, a in arms.items():
        f = a["final"]
        lines.append(f"{name:<{w}}  {a['external_used']:>8}  {_fmt(f['test_acc'], '.3f'):>14}  "
                     f"{_fmt(f['test_greedy_acc'], '.3f'):>14}  {_fmt(f['U_s'], '.4f'):>14}  "
                     f"{_fmt(f['U_v'], '.4f'):>14}  {_fmt(f['G'], '+.4f'):>14}")
    lines += ["", "fitted limits (coupled model per run; 95 % interval "
              + (f"over {seeds} seeds" if seeds > 1 else "of the fit") + "):"]
    lines.append(f"{'arm':<{w}}  {'U_s∞':>26}  {'U_v∞':>26}  {'test_acc∞':>26}")
    for name, a in arms.items():
        cells = []
        for key in ("U_s_inf", "U_v_inf", "accuracy_inf"):
            e = (a.get("limits") or {}).get(key)
            cells.append("—" if e is None else
                         f"{e['mean']:.4f} [{_num(e['lo']):.4f}, {_num(e['hi']):.4f}]")
        lines.append(f"{name:<{w}}  " + "  ".join(f"{c:>26}" for c in cells))
    with_pk = {n: a["pass_at_k"] for n, a in arms.items() if "pass_at_k" in a}
    if with_pk:
        ks = list(next(iter(with_pk.values()))["first"])
        lines += ["", f"pass@k on the test split, round 0 -> round {result['rounds']}:"]
        lines.append(f"{'arm':<{w}}  " + "  ".join(f"{'k=' + k:>13}" for k in ks))
        for name, p in with_pk.items():
            lines.append(f"{name:<{w}}  " + "  ".join(f"{p['first'][k]:.3f} -> {p['last'][k]:.3f}" for k in ks))
        for name, p in with_pk.items():
            lines.append(f"  {name}: {pass_k_trend(p)}")
    lines += ["", "theory (Sun et al. Sec. 5; silab.theory):"]
    d = th["dynamics"]
    if d:
        lines.append(f"  control arm, coupled model: λ = {d['lambda']:.3g}, α/β = {d['alpha_over_beta']:.3g}, "
                     f"b/k = {d['b_over_k']:.3g}, R² solver {_num(d['r2'].get('solver')):.3f}, "
                     f"verifier {_num(d['r2'].get('verifier')):.3f}")
    for name, g in th["gamma"].items():
        if g.get("converged"):
            lines.append(f"  γ ({name} vs none) = {_num(g['gamma']):.3g}  [{_num(g['lo']):.3g}, {_num(g['hi']):.3g}]"
                         + (f"  ({g['message']})" if g.get("message") else ""))
        else:
            lines.append(f"  γ ({name} vs none): not fitted: {g.get('message') or 'did not converge'}")
    if math.isfinite(_num(th["gamma_pooled"])):
        lines.append(f"  γ pooled = {th['gamma_pooled']:.3g} ({th['gamma_pooled_how']})")
    if th["predicted"]:
        lines.append(f"  {'arm':<{w}}  {'U_s measured':>12}  {'predicted':>10}  {'U_v measured':>12}  "
                     f"{'predicted':>10}  {'U_s_inf pred.':>13}")
        for name, pr in th["predicted"].items():
            f = arms[name]["final"]
            lines.append(f"  {name:<{w}}  {f['U_s']['mean']:>12.4f}  {pr['U_s']:>10.4f}  "
                         f"{f['U_v']['mean']:>12.4f}  {pr['U_v']:>10.4f}  {pr['U_s_inf']:>13.4f}")
        lines.append("  Prop. 5.1: every arm that spends the whole pool has the same limit U_s∞ "
                     "(first order in γ; exact only as β → 0 with small γ).")
    lines.append(f"  noise: U_s ± {_num(th['noise']['U_s']):.4f}, U_v ± {_num(th['noise']['U_v']):.4f} ({th['noise_how']})")
    lines.append("  verdict: " + th["verdict"])
    lines.append(f"\n{result['seconds']:.0f} s; run folders and sweep.json in {result['out']}")
    return "\n".join(lines)
