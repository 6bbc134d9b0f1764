"""`silab sweep`: cross-improvement experiments (Sun et al., Sec. 5) — one external pool M, spent
on different schedules, against a control arm that spends none.

    for seed in seeds:                                  # one model load per seed
        for arm in none, early, uniform, late:          # each arm its own run folder SWEEP/<arm>-s<seed>
            rounds 0..T, the arm's schedule spending the pool (loop.external_for); a round that an
            earlier arm ran on the same data is copied, not rerun: round 0 never depends on the
            schedule, and late repeats none until round T
    table:  per arm the final test accuracy, U_s, U_v, G (mean ± sd over seeds) and pass@k, round 0 → T
    limits: each run's fitted U_s∞, U_v∞ and accuracy limit, with 95 % intervals over seeds
    theory: the self-improvement dynamics fitted to the none arm, γ fitted per arm against it
            (silab.theory.fit_gamma), the arms' U_s, U_v as compare_schedules predicts them, and
            whether the arms' fitted limits agree (Prop. 5.1, to first order: a homogeneity test
            whose size does not grow with the number of arms) or differ as the schedule-dependent
            dynamics says (β > 0: early data buys more)

Progress goes to stderr, the table to stdout (`--json`: one object); SWEEP/sweep.json keeps it.
Bad input raises UsageError before anything is written.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from silab.engine.sweep_report import render, verdict  # noqa: F401  (render: the table)
from silab.errors import UsageError, UsageParser as Parser
from silab.theory.data import jsonable

NAMES = ("none", "early", "uniform", "late")
FINAL_KEYS = ("test_acc", "test_greedy_acc", "U_s", "U_v", "G")


@dataclass(frozen=True)
class Arm:
    label: str                    # what the table shows: a name, or the list of shares
    folder: str                   # run folder stem: the name, or list1, list2, ...
    spec: str | tuple[float, ...]  # what external.schedule gets


# --- input -----------------------------------------------------------------------------------

def split_top_level(text: str) -> list[str]:
    """'early,[0.5,0.5],late' -> ['early', '[0.5,0.5]', 'late'] (commas inside brackets stay)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def parse_schedules(text: str, rounds: int) -> list[Arm]:
    """The arms, control first: names from none/early/uniform/late, or lists of shares in brackets."""
    from silab.theory import schedule_shares

    arms, lists = [Arm("none", "none", "none")], 0
    for part in (p.strip() for p in split_top_level(text)):
        if not part:
            raise UsageError(f"--schedules {text!r}: empty entry (give e.g. early,uniform,late)")
        if part.startswith("["):
            try:
                shares = json.loads(part)
            except json.JSONDecodeError:
                raise UsageError(f"--schedules {part}: not a list of numbers, e.g. [0.5,0.25,0.25]") from None
            if not isinstance(shares, list) or any(isinstance(x, bool) for x in shares):
                raise UsageError(f"--schedules {part}: not a list of numbers, e.g. [0.5,0.25,0.25]")
            try:
                schedule_shares(shares, rounds)
            except ValueError as e:
                raise UsageError(f"--schedules {part}: {e}") from None
            spec = tuple(float(x) for x in shares)
            if any(a.spec == spec for a in arms):
                continue
            lists += 1
            arms.append(Arm("[" + ", ".join(f"{x:g}" for x in spec) + "]", f"list{lists}", spec))
        elif part in NAMES:
            if all(a.spec != part for a in arms):
                arms.append(Arm(part, part, part))
        else:
            raise UsageError(f"--schedules: unknown schedule {part!r} (choose from {', '.join(NAMES)} "
                             "or give shares in brackets, e.g. [0.5,0.5])")
    return arms


def arm_profile(base, arm: Arm, seed: int):
    """The base profile with the arm's schedule and seed, validated like a profile file."""
    from silab.config import profile_from_dict

    data = base.to_dict()
    data["external"]["schedule"] = arm.spec if isinstance(arm.spec, str) else list(arm.spec)
    data["seed"] = seed
    return profile_from_dict(data, f"--schedules {arm.label}")


# --- running ---------------------------------------------------------------------------------

def shared_prefix(counts: list[int], done: list[tuple[Path, list[int]]]) -> tuple[Path | None, int]:
    """The seed's finished arm whose external counts per round agree longest with `counts`, and
    through which round they agree. Round 0 never depends on the schedule, and round t depends only
    on the seed and the training data of rounds 1..t, so those rounds are the same run."""
    best, upto = None, -1
    for path, other in done:
        s = 0
        while s < len(counts) and counts[s] == other[s]:
            s += 1
        if s > upto:
            best, upto = path, s
    return best, upto


def share_rounds(source: Path, run, upto: int) -> None:
    """Copy rounds 0..upto (folders; rounds.jsonl is re-derived) from an arm that ran them."""
    for t in range(upto + 1):
        shutil.copytree(source / "rounds" / f"{t:03d}", run.round_dir(t))
    run.discard_partial()  # re-derives rounds.jsonl from the completed round folders


def run_arms(arms: list[Arm], profiles: dict, out: Path, say) -> dict[str, list[Path]]:
    """Every arm for every seed, in-process, one backend per seed. Returns arm label -> run folders."""
    from silab.console import ConsolePrinter
    from silab.engine import session
    from silab.engine.loop import external_counts

    printer = ConsolePrinter(out=sys.stderr, err=sys.stderr)
    runs: dict[str, list[Path]] = {arm.label: [] for arm in arms}
    seeds = sorted({seed for _, seed in profiles})
    for i, seed in enumerate(seeds):
        backend, done = None, []
        for j, arm in enumerate(arms):
            profile = profiles[arm.label, seed]
            path = out / f"{arm.folder}-s{seed}"
            say(f"[seed {seed} ({i + 1}/{len(seeds)}), arm {arm.label} ({j + 1}/{len(arms)})] {path}")
            loop = session.new_run(profile, str(path), printer)
            counts = external_counts(np.array(loop.plan_shares()), len(loop.splits.external))
            source, upto = shared_prefix(counts, done)
            if source is not None:
                share_rounds(source, loop.run, upto)
                which = "round 0" if upto == 0 else f"rounds 0..{upto}"
                loop.emit("log", message=f"{which} copied from {source.name}: same seed, same model, "
                                         "same external data so far")
            loop.backend = backend
            session.run_rounds(loop, resumed=False)
            backend = loop.backend
            done.append((loop.run.path, counts))
            runs[arm.label].append(path)
        if backend is not None:
            backend.close()
    return runs


# --- summary ---------------------------------------------------------------------------------

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


# --- theory ----------------------------------------------------------------------------------

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


# --- the command -----------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = Parser(prog="silab sweep", description="Cross-improvement: run one external pool on several "
                    "schedules (plus a control arm without it) and compare the arms with the theory.")
    parser.add_argument("--profile", help="profile name or .toml path (default: tiny)")
    parser.add_argument("--schedules", default="early,uniform,late",
                        help="comma list of none/early/uniform/late or [shares] (the none arm is always run)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per arm: the profile's seed, +1, ...")
    parser.add_argument("--rounds", type=int, help="train this many times (measures rounds 0..T)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile key (repeatable)")
    parser.add_argument("--out", help="sweep folder (default: <run_root>/sweep-<time>)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)

    from silab.config import load_profile

    base = load_profile(args.profile, args.overrides)
    if args.rounds is not None:
        base.rounds = args.rounds
    if base.rounds < 1:
        raise UsageError(f"--rounds must be >= 1 for a sweep (schedules spend data in rounds 1..T), got {base.rounds}")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if base.task.n_external < 1:
        raise UsageError("task.n_external is 0: there is no external pool to schedule "
                         "(e.g. --set task.n_external=256)")
    arms = parse_schedules(args.schedules, base.rounds)
    if len(arms) < 2:
        raise UsageError("--schedules: give at least one schedule that spends data (early, uniform, late)")
    seeds = [base.seed + i for i in range(args.seeds)]
    profiles = {(arm.label, seed): arm_profile(base, arm, seed) for arm in arms for seed in seeds}
    out = Path(args.out) if args.out else Path(base.run_root) / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: sweep folder exists and is not empty")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    try:
        runs = run_arms(arms, profiles, out, say)
    except UsageError:
        raise
    except KeyboardInterrupt:
        print(f"\ninterrupted: completed rounds are in {out}", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"silab sweep: failed: {type(exc).__name__}: {exc} (completed rounds are in {out}; "
              "traceback in the arm's events.jsonl)", file=sys.stderr)
        return 1
    summary = summarize(arms, runs, base.task.n_external)
    result = {"out": str(out), "profile": base.name, "rounds": base.rounds, "seeds": seeds,
              "n_external": base.task.n_external, "schedules": [a.label for a in arms],
              "arms": summary, "theory": theory_view(arms, summary, len(seeds)),
              "seconds": round(time.perf_counter() - started, 1)}
    clean = jsonable(result)
    (out / "sweep.json").write_text(json.dumps(clean, indent=1) + "\n")
    print(json.dumps(clean) if args.json else render(clean))
    return 0
