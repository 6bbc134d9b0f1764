"""The lab's parts that need no screen: the event fold, the run-folder reader, input validation,
the theory adapter and the engine client."""
from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from silab.tui.client import EngineClient, engine_argv
from silab.tui.fitting import FitSummary, fit_records, summarize
from silab.runs import read_records
from silab.tui.state import RunState, describe_schedule, fmt_duration, fmt_num
from silab.tui.widgets.dialogs import build_plan, check_settings, parse_rounds
from silab.tui.widgets.panels import text_bar
from test_tui_fakeengine import synthetic_record

RECORDED = Path(__file__).parent / "data" / "recorded_run"
TINY = Path(__file__).parent / "data" / "recorded_tiny"
PROFILE = {"rounds": 6, "verify": {"sigma": 0.5}, "sampling": {"n_samples": 4},
           "train": {"lr": 1e-4}, "task": {"n_external": 32}}


def live_state() -> RunState:
    state = RunState(run_dir=Path("run"), name="run")
    state.load_profile(PROFILE)
    state.engine = "starting"
    return state


# ---------------------------------------------------------------------------------------------
# the fold

def test_fold_a_round():
    s = live_state()
    s.apply({"event": "run_started", "time": 100.0, "rounds": 6, "resumed_from": None})
    s.apply({"event": "waiting", "time": 100.5, "next_round": 0})
    assert s.engine == "idle" and s.next_round == 0
    line = s.apply({"event": "phase_started", "time": 101.0, "round": 0, "phase": "sample", "total": 30})
    assert s.engine == "running" and "sampling" in line.text
    assert s.apply({"event": "progress", "time": 106.0, "round": 0, "phase": "sample",
                    "done": 10, "total": 30}) is None  # ticks do not flood the log
    assert s.progress.rate == pytest.approx(2.0) and s.progress.eta == pytest.approx(10.0)
    s.apply({"event": "phase_finished", "time": 116.0, "round": 0, "phase": "sample",
             "seconds": 15.0, "done": 30})
    assert s.phases_done == {"sample": 15.0}
    rec = synthetic_record(0, {"sigma": 0.5, "n_samples": 4, "lr": 1e-4})
    line = s.apply({"event": "round_finished", "time": 120.0, "round": 0, "record": rec})
    assert s.rounds_done == 1 and s.next_round == 1 and s.progress is None
    assert "round 0 saved" in line.text and "U_s" in line.text
    assert s.relative(220.0) == "+2:00"


def test_paused_survives_the_waiting_that_follows_it():
    s = live_state()
    s.apply({"event": "phase_started", "time": 1, "round": 2, "phase": "train", "total": 8})
    s.engine = "pausing"
    s.apply({"event": "paused", "time": 2, "next_round": 2})
    s.apply({"event": "waiting", "time": 2, "next_round": 2})
    assert s.engine == "paused" and s.round is None and s.next_round == 2


def test_settings_plan_and_errors_are_folded():
    s = live_state()
    s.apply({"event": "settings_changed", "time": 1, "settings": {"sigma": 0.7}, "from_round": 3})
    assert s.settings == {"sigma": 0.7, "n_samples": 4, "lr": 1e-4}
    s.apply({"event": "plan_changed", "time": 1, "schedule": [0, 0.1, 0.1]})
    assert s.schedule_list == [0, 0.1, 0.1]
    line = s.apply({"event": "error", "time": 1, "message": "CUDA OOM",
                    "traceback": "Traceback\n  line\nRuntimeError: CUDA OOM"})
    assert line.error and s.last_error == "CUDA OOM" and "RuntimeError" in line.text


def test_recorded_run_is_read_whole():
    state, events = RunState.from_run_dir(RECORDED)
    assert [r["round"] for r in state.records] == list(range(6))
    assert state.engine == "view" and state.next_round == 6 and state.target_rounds == 8
    assert state.settings["sigma"] == 0.6 and state.schedule_list[1:3] == [0.25, 0.25]
    assert events and state.t0 == events[0]["time"]


def test_records_fall_back_to_summaries(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    (run / "rounds.jsonl").unlink()
    (run / "rounds.jsonl").write_text('{"round": 0, "U_s": 1')  # torn line, as after a crash
    assert [r["round"] for r in read_records(run)] == list(range(6))


def test_formatting():
    assert describe_schedule([0, 0.25, 0.25]) == "r2 .25  r3 .25  Σ.50"
    assert describe_schedule("early") == "early (preset)" and describe_schedule(None) == "none"
    assert fmt_num(None) == "—" and fmt_num(float("nan")) == "—" and fmt_num(12.345) == "12.3"
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "—"
    assert text_bar(0.5, 10) == "█████░░░░░" and text_bar(None, 4) == "░░░░"


# ---------------------------------------------------------------------------------------------
# validation, with the profile's own rules

def test_settings_are_validated_like_set():
    cur = {"sigma": 0.5, "n_samples": 4, "lr": 1e-4}
    assert check_settings(PROFILE, {"sigma": "0.7", "n_samples": "4", "lr": ""}, cur) == ({"sigma": 0.7}, None)
    for values, word in (({"sigma": "1.5"}, "<= 1"), ({"n_samples": "0"}, ">= 1"),
                         ({"n_samples": "2.5"}, "integer"), ({"lr": "fast"}, "number")):
        changes, error = check_settings(PROFILE, values, cur)
        assert changes == {} and word in error and not error.startswith("--set")


def test_injection_plans():
    assert parse_rounds("2-4, 7") == [2, 3, 4, 7]
    with pytest.raises(ValueError):
        parse_rounds("3-1")
    assert build_plan(PROFILE, "none", "late", "", 1, 6) == ("late", None)
    assert build_plan(PROFILE, [0, 0.1], "3-4", "0.2", 1, 6) == ([0, 0.1, 0.2, 0.2], None)
    _, err = build_plan(PROFILE, None, "2", "0.1", 3, 6)
    assert "already trained" in err
    _, err = build_plan(PROFILE, None, "7", "0.1", 1, 6)
    assert "past the run's last round" in err
    _, err = build_plan(PROFILE, None, "1-6", "0.5", 1, 6)
    assert "sum" in err


# ---------------------------------------------------------------------------------------------
# theory adapter

def synthetic_records(n: int) -> list[dict]:
    return [synthetic_record(t, {"sigma": 0.5, "n_samples": 4, "lr": 1e-4}) for t in range(n)]


def test_fit_of_a_decaying_run_fills_the_table():
    fit = fit_records(synthetic_records(8))
    assert fit.ok, fit.note
    assert fit.param("λ") == pytest.approx(0.45, abs=0.05)
    lam = next(r for r in fit.params if r.name == "λ")
    assert lam.lo < lam.value < lam.hi and fit.r2 > 0.9
    curves = fit.predict([0.0, 50.0])
    assert curves["U_s"][1] == pytest.approx(fit.param("U_s∞"), rel=1e-3)
    assert set(curves) == {"U_s", "U_v", "G"}


def test_too_few_rounds_give_a_reason_not_a_crash():
    fit = fit_records(synthetic_records(2))
    assert not fit.ok and fit.note


def test_summarize_reads_theorys_summary():
    from silab.theory.summary import fit_run
    result = fit_run(synthetic_records(8))
    fit = summarize(result, 8)
    assert [r.name for r in fit.params] == ["λ", "U_s∞", "U_v∞", "G∞", "α/β"]
    assert fit.param("λ") == result.params["lambda"].value
    assert fit.r2 == min(result.r2.values()) and fit.heldout == result.heldout_mse
    assert isinstance(fit, FitSummary) and fit.comparison is None


def test_models_are_compared_and_the_best_one_gives_the_limits():
    """On the recorded organism run separate rates forecast better than one shared rate, and the
    F test rejects one rate (as `silab fit` says)."""
    fit = fit_records(read_records(TINY))
    c = fit.comparison
    assert c.ok and set(c.fits) == {"coupled", "exp", "power", "exp2"}
    assert c.scored_by == "rolling" and c.best == min(c.forecast_mse, key=c.forecast_mse.get)
    assert c.best != "coupled" and c.shared_rejected
    assert c.limits["U_s"].lo < c.limits["U_s"].value < c.limits["U_s"].hi
    assert 0 < c.limits["accuracy"].value < 1
    assert "forecasts best" in c.verdict() and "one shared rate rejected" in c.verdict()


def test_too_few_rounds_to_compare_say_so():
    c = fit_records(synthetic_records(4)).comparison
    assert not c.ok and "4 of 5" in c.message


# ---------------------------------------------------------------------------------------------
# engine client

ECHO_ENGINE = r"""
import json, sys
print(json.dumps({"event": "run_started", "time": 1.0}), flush=True)
print("a library printed this", flush=True)
print("warming up", file=sys.stderr, flush=True)
cmd = json.loads(sys.stdin.readline())
print(json.dumps({"event": "log", "time": 2.0, "message": cmd["cmd"]}), flush=True)
sys.exit(5)
"""


def test_client_reads_events_and_output_and_sees_death():
    events, output, exits = [], [], []

    async def main():
        client = EngineClient([sys.executable, "-c", ECHO_ENGINE], on_event=events.append,
                              on_output=output.append, on_exit=exits.append)
        await client.start()
        assert await client.send({"cmd": "step"})
        assert await client.wait(30) == 5
        assert not client.alive and not await client.send({"cmd": "step"})
        return client

    client = asyncio.run(main())
    assert [e["event"] for e in events] == ["run_started", "log"] and events[1]["message"] == "step"
    assert set(output) == {"a library printed this", "warming up"}
    assert exits == [5] and list(client.stderr_tail) == ["warming up"]


def test_client_stop_escalates_when_the_engine_ignores_it():
    async def main():
        output = []
        client = EngineClient([sys.executable, "-c", "import signal, time\n"
                               "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                               "print('ignoring TERM', flush=True)\ntime.sleep(60)"],
                              on_event=lambda e: None, on_output=output.append,
                              on_exit=lambda rc: None)
        await client.start()
        while not output and client.alive:  # a TERM sent before the child ignores it kills it
            await asyncio.sleep(0.01)
        return await client.stop(grace=0.2)

    assert asyncio.run(main()) == -9


def test_engine_argv():
    argv = engine_argv(Path("r"), "micro", ["rounds=3"])
    assert argv[1:] == ["-m", "silab.engine", "r", "--nice", "5", "--new", "micro", "--set", "rounds=3"]
    assert engine_argv(Path("r"))[1:] == ["-m", "silab.engine", "r", "--nice", "5"]


def test_preset_preview_matches_the_engine_shares():
    from silab.tui.widgets.dialogs import preset_preview

    assert preset_preview("uniform", 4) == "uniform → r1 .25  r2 .25  r3 .25  r4 .25  Σ1.00"
