"""The `silab` command. Heavy modules are imported inside each command, so `silab --help` is instant
and the UI process never loads torch.

Exit codes: 0 done, 1 a failure during a run (completed rounds stay on disk), 2 bad input,
130 interrupted (Ctrl-C), 143 terminated (`kill PID`); an interrupted run can be resumed.
"""
from __future__ import annotations

import argparse
import signal
import sys
import textwrap
from pathlib import Path

from silab.errors import UsageError, UsageParser as Parser

COMMANDS = ("run", "fit", "profiles", "view", "sweep", "doctor", "plot", "export")


def add_profile_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="profile name (see `silab profiles`) or path to a .toml file")
    parser.add_argument("--run-dir", help="folder for the run (default: <run_root>/<profile>-<time>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile key, e.g. --set verify.sigma=0.7 (repeatable)")


# --- silab run ----------------------------------------------------------------------------------

class Terminated(BaseException):
    """SIGTERM, raised where the run is, so `kill PID` stops it like Ctrl-C does (a BaseException,
    as KeyboardInterrupt is: not a failure of the run)."""


def _terminate(signum, frame):
    raise Terminated

def cmd_run(argv: list[str]) -> int:
    parser = Parser(prog="silab run", description="Run self-improvement rounds headless.")
    add_profile_args(parser)
    parser.add_argument("--rounds", type=int, help="train this many times (measures rounds 0..K)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run after its last completed round")
    parser.add_argument("--track", choices=["tensorboard", "wandb"],
                        help="also log each round to TensorBoard (RUN/tensorboard) or W&B; a resumed "
                        "run continues the same tracker run")
    args = parser.parse_args(argv)

    from silab.config import load_profile
    from silab.console import ConsolePrinter
    from silab.engine import session

    printer = ConsolePrinter()
    if args.track:  # one more consumer of the events; refused here when its package is missing
        from silab.track import Tracker
        printer = Tracker(args.track, then=printer)
    if args.resume:
        if args.profile or args.run_dir:
            raise UsageError("--resume takes its profile and folder from the run; drop --profile/--run-dir")
        start = session.resume_run(args.resume, args.overrides, args.rounds)
    else:
        start = session.new_run(load_profile(args.profile, args.overrides, args.rounds), args.run_dir)
    where = start.run.path   # written now: from here on, an interruption or a failure says where
    signal.signal(signal.SIGTERM, _terminate)
    try:
        session.run_rounds(start, printer)
    except (KeyboardInterrupt, Terminated) as stop:
        how = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"\n{how}: completed rounds are in {where}; continue with: silab run --resume {where}",
              file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except UsageError:
        raise
    except Exception as exc:  # a failure mid-run: keep what is done, say where it is
        print(f"silab run: failed: {type(exc).__name__}: {exc} (completed rounds are in {where}; "
              f"traceback in events.jsonl)", file=sys.stderr)
        return 1
    print(f"done: {where}", file=sys.stderr)
    return 0


# --- small commands -----------------------------------------------------------------------------

def cmd_profiles(argv: list[str]) -> int:
    parser = Parser(prog="silab profiles", description="List the bundled profiles, or every key a profile "
                    "(or --set) may give.")
    parser.add_argument("--keys", action="store_true", help="each key with its type, default, range and doc")
    args = parser.parse_args(argv)
    from silab.config import keys, load_profile, profiles_dir, toml_value

    if args.keys:
        for key in keys():
            rule = f"{key.type}; {key.allowed}" if key.allowed else key.type
            print(f"{key.name} = {toml_value(key.default)}  ({rule})")
            print(textwrap.fill(key.doc, 100, initial_indent="    ", subsequent_indent="    "))
        return 0
    for path in sorted(profiles_dir().glob("*.toml")):
        try:
            p = load_profile(str(path))
            print(f"{path.stem:<22} {p.model.path:<38} {p.task.name:<9} N={p.sampling.n_samples:<3} "
                  f"{p.model.backend:<4}  {p.description}")
        except UsageError as e:
            print(f"{path.stem:<22} INVALID: {e}")
    return 0


def cmd_fit(argv: list[str]) -> int:
    from silab.theory.cli import main as fit_main
    return fit_main(argv)


def cmd_sweep(argv: list[str]) -> int:
    from silab.sweep import main as sweep_main
    return sweep_main(argv)


def cmd_view(argv: list[str]) -> int:
    parser = Parser(prog="silab view", description="Open runs read-only (no engine): the first as "
                    "the run, the others drawn beside it; a sweep's folder opens with all its arms.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN")
    args = parser.parse_args(argv)
    from silab.runs import expand_runs
    from silab.tui.app import run_app
    first, *others = expand_runs(args.run_dirs)
    return run_app(run_dir=first, view_only=True, references=others)


def cmd_doctor(argv: list[str]) -> int:
    parser = Parser(prog="silab doctor", description="Versions, devices and a self-test (about a minute) of "
                    "the profile's backend on a micro model of its family: sample, judge, train, adapters, "
                    "sleep/wake (CUDA), hf vs vLLM log-probs. Exit 0 when every check passes, 1 otherwise.")
    parser.add_argument("--profile", help="profile name or .toml path (default: tiny)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile key, e.g. --set model.backend=vllm (repeatable)")
    args = parser.parse_args(argv)
    from silab.config import load_profile
    profile = load_profile(args.profile, args.overrides)
    from silab.engine import doctor
    from silab.engine.session import check_runtime
    for line in doctor.versions() + doctor.devices():
        print(line, flush=True)
    check_runtime(profile)  # a missing vLLM or CUDA is bad input, as for a run
    print(f"self-test: profile {profile.name}, {profile.model.backend} backend, {profile.model.device}, "
          f"{profile.model.dtype}", flush=True)
    marks = {True: "ok  ", False: "FAIL", None: "skip"}
    checks = doctor.self_test(profile, lambda c: print(f"  {marks[c.ok]} {c.name}: {c.detail}", flush=True))
    failed = [c.name for c in checks if c.ok is False]
    print("verdict: " + (f"FAILED ({', '.join(failed)})" if failed else "all checks passed"))
    return 1 if failed else 0


def cmd_plot(argv: list[str]) -> int:
    parser = Parser(prog="silab plot", description="Draw the paper's panels (U_s, U_v, G with the fit "
                    "and its forecast; accuracies; pass@k) for one or more runs (a sweep's folder: its "
                    "arms) into a PNG, PDF or SVG file.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png, .pdf or .svg")
    args = parser.parse_args(argv)
    from silab.figures import plot_runs
    print(f"wrote {plot_runs(args.run_dirs, Path(args.output))}", file=sys.stderr)
    return 0


def cmd_export(argv: list[str]) -> int:
    parser = Parser(prog="silab export", description="Write a run's rounds as a table (one row per "
                    "round; nested keys flattened with dots).")
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument("--csv", action="store_true", required=True, help="as CSV (the one format)")
    parser.add_argument("-o", "--output", metavar="FILE", help="default RUN/rounds.csv; - for stdout")
    args = parser.parse_args(argv)
    from silab.runs.export import export_csv
    out = export_csv(Path(args.run_dir), Path(args.output) if args.output and args.output != "-"
                     else args.output)
    if out is not None:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_lab(argv: list[str]) -> int:

    parser = Parser(prog="silab", description="The silab lab: a terminal UI that drives self-improvement "
                    "rounds. Subcommands: run, fit, sweep, profiles, view, doctor, plot, export (silab COMMAND --help).")
    add_profile_args(parser)
    parser.add_argument("--resume", metavar="RUN_DIR", help="reopen a run with its history")
    args = parser.parse_args(argv)
    from silab.tui.app import run_app
    if args.resume:
        if args.profile or args.run_dir or args.overrides:
            raise UsageError("--resume takes its profile and folder from the run; drop --profile/--run-dir/--set")
        return run_app(run_dir=Path(args.resume), resume=True)
    # validated here, in this process, so bad input is one line before the screen opens
    from silab.config import load_profile
    from silab.runs.store import default_run_dir
    profile = load_profile(args.profile, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(profile.run_root, profile.name)
    return run_app(run_dir=run_dir, new_profile=args.profile, overrides=args.overrides)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    handler = {"run": cmd_run, "fit": cmd_fit, "profiles": cmd_profiles, "view": cmd_view,
               "sweep": cmd_sweep, "doctor": cmd_doctor, "plot": cmd_plot,
               "export": cmd_export}.get(command, cmd_lab)
    try:
        code = handler(argv[1:] if command else argv)
    except UsageError as e:
        prog = f"silab {command}" if command else "silab"
        print(f"{prog}: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
