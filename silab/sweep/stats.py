"""The arms' statistics over seeds: final-round values, mean curves, shares spent, pass@k, and
each run's fitted limits with an interval over seeds."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from silab.sweep.arms import Arm

FINAL_KEYS = ("test_acc", "test_greedy_acc", "U_s", "U_v", "G")


def _stats(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else None,
            "values": [float(x) for x in a]}


def summarize(arms: list[Arm], runs: dict[str, list[Path]], n_external: int) -> dict:
    """Per arm: final-round statistics over seeds, mean curves, shares used, pass@k round 0 → T."""
    from silab.runs.store import read_records

    out = {}
    for arm in arms:
        per_seed = [read_records(p) for p in runs[arm.label]]
        T = min(len(r) for r in per_seed) - 1
        finals = [r[T] for r in per_seed]
        used = [[rec.get("external", 0) for rec in r[1:T + 1]] for r in per_seed]
        ids = [[i for rec in r for i in rec.get("external_ids", [])] for r in per_seed]
        entry = {
            "schedule": arm.spec if isinstance(arm.spec, str) else list(arm.spec),
            "runs": [str(p) for p in runs[arm.label]],
            "rounds": T,
            "external_used": int(round(np.mean([sum(u) for u in used]))),
            "external_unique": all(len(x) == len(set(x)) for x in ids),
            "eta": (np.mean(used, axis=0) / n_external).tolist() if T else [],
            "final": {k: _stats([f[k] for f in finals]) for k in FINAL_KEYS},
            "curve": {k: np.mean([[rec[k] for rec in r[:T + 1]] for r in per_seed], axis=0).tolist()
                      for k in ("U_s", "U_v", "test_acc")},
        }
        entry["limits"] = fitted_limits([r[:T + 1] for r in per_seed])
        if all("pass_at_k" in r[0] and "pass_at_k" in r[T] for r in per_seed):
            ks = list(per_seed[0][0]["pass_at_k"])
            curve = {k: np.mean([[rec["pass_at_k"][k] for rec in r[:T + 1]] for r in per_seed], axis=0).tolist()
                     for k in ks} if all("pass_at_k" in rec for r in per_seed for rec in r[:T + 1]) else None
            entry["pass_at_k"] = {
                "first": {k: float(np.mean([r[0]["pass_at_k"][k] for r in per_seed])) for k in ks},
                "last": {k: float(np.mean([r[T]["pass_at_k"][k] for r in per_seed])) for k in ks},
                "curve": curve}
        out[arm.label] = entry
    return out


def fitted_limits(per_seed: list[list[dict]]) -> dict:
    """U_s∞, U_v∞ (coupled model) and the accuracy limit of each seed's run, with a 95 % interval
    over seeds (t on K - 1 dof), or the fit's own interval when there is one seed."""
    from silab.theory import fit_run
    from silab.theory.models import t975

    fits = [fit_run(records) for records in per_seed]
    out = {}
    for key in ("U_s_inf", "U_v_inf", "accuracy_inf"):
        ests = [(f.accuracy_inf if key == "accuracy_inf" else f.params.get(key)) if f.ok else None
                for f in fits]
        ests = [e for e in ests if e is not None and math.isfinite(e.value)]
        if not ests:
            out[key] = None
            continue
        values = np.array([e.value for e in ests])
        entry = {"values": values.tolist(), "stderrs": [e.stderr for e in ests],
                 "mean": float(values.mean()), "n": len(ests)}
        if len(ests) > 1:
            sd = float(values.std(ddof=1))
            half = t975(len(ests) - 1) * sd / math.sqrt(len(ests))
            entry.update(sd=sd, stderr=sd / math.sqrt(len(ests)), lo=entry["mean"] - half,
                         hi=entry["mean"] + half, how=f"over {len(ests)} seeds")
        else:
            entry.update(sd=None, stderr=ests[0].stderr, lo=ests[0].lo, hi=ests[0].hi, how="fit")
        out[key] = entry
    return out
