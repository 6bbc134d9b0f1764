"""`silab sweep`: the command (see silab/sweep/__init__.py for what it runs and prints)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from silab.errors import UsageError, UsageParser as Parser
from silab.runs.store import RunDir, atomic_write_text
from silab.sweep.arms import arm_profile, parse_schedules
from silab.sweep.fit import theory_view
from silab.sweep.report import render
from silab.sweep.run import run_arms
from silab.sweep.stats import summarize
from silab.theory.data import jsonable


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

    base = load_profile(args.profile, args.overrides, args.rounds)
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
    RunDir.check_new(out)

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
    atomic_write_text(out / "sweep.json", json.dumps(clean, indent=1) + "\n")
    print(json.dumps(clean) if args.json else render(clean))
    return 0
