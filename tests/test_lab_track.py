"""--track: each round's record with the round as the step; a resumed run continues the same
tracker run (its id in RUN/tracker.json); a tracker that is not installed is one line, exit 2."""
from __future__ import annotations

import importlib.util
import json

import pytest

from silab.cli import main
from silab.errors import UsageError
from silab.track import Tracker, check_tracker, scalars


def events(run_dir, rounds, last=True):
    yield {"event": "run_started", "run_dir": str(run_dir), "profile": "micro", "rounds": 4}
    for t in rounds:
        yield {"event": "round_finished", "round": t,
               "record": {"round": t, "U_s": 1.0 / (t + 1), "test_acc": 0.5 + 0.1 * t,
                          "pass_at_k": {"1": 0.5, "4": 0.9}, "seconds": {"total": 2.0},
                          "external_ids": ["a"], "judge_auc": None}}
    if last:
        yield {"event": "run_finished", "rounds_completed": len(rounds)}


def test_scalars_flatten_numbers_only():
    rec = next(e for e in events("r", [3]) if e["event"] == "round_finished")["record"]
    assert scalars(rec) == {"U_s": 0.25, "test_acc": pytest.approx(0.8), "pass_at_k/1": 0.5,
                            "pass_at_k/4": 0.9, "seconds/total": 2.0}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="track-tb extra")
def test_tensorboard_logs_rounds_and_a_resume_continues(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seen = []
    tracker = Tracker("tensorboard", then=seen.append)
    for e in events(tmp_path, [0, 1], last=False):      # interrupted after round 1
        tracker(e)
    tracker.close()
    state = json.loads((tmp_path / "tracker.json").read_text())
    assert state == {"kind": "tensorboard", "log_dir": str(tmp_path / "tensorboard")}
    resumed = Tracker("tensorboard")
    for e in events(tmp_path, [2, 3]):
        resumed(e)
    assert len(seen) == 3 and json.loads((tmp_path / "tracker.json").read_text()) == state
    acc = EventAccumulator(state["log_dir"])
    acc.Reload()
    steps = sorted(s.step for s in acc.Scalars("U_s"))
    assert steps == [0, 1, 2, 3]
    assert [round(s.value, 3) for s in sorted(acc.Scalars("pass_at_k/4"), key=lambda s: s.step)] == [0.9] * 4


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="track-wandb extra")
def test_wandb_offline_keeps_one_run_id_across_a_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = Tracker("wandb")
    for e in events(tmp_path, [0, 1]):
        tracker(e)
    run_id = json.loads((tmp_path / "tracker.json").read_text())["id"]
    resumed = Tracker("wandb")
    for e in events(tmp_path, [2]):
        resumed(e)
    assert json.loads((tmp_path / "tracker.json").read_text())["id"] == run_id
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 2 and all((r / f"run-{run_id}.wandb").is_file() for r in runs)


def test_a_missing_tracker_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UsageError, match=r"pip install 'silab\[track-wandb\]'"):
        check_tracker("wandb")
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--track", "wandb", "--run-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "track-wandb" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
