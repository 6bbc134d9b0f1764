"""The two clocks (issue 14): train.picks = "refresh" (rounds) or "fixed" (one fine-tune on round
0's picks, measured every train.epochs epochs), on the micro organism."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from silab.config import load_profile
from silab.engine import session
from silab.engine.backend import epoch_order, stream
from silab.engine.loop import FIXED_SET
from silab.errors import UsageError
from silab.runs.store import read_records
from silab.theory.data import load

MICRO_PROFILE = Path(__file__).resolve().parent / "micro.toml"
INNER = ["train.picks=fixed", "train.epochs=0.5", "train.batch_size=4", "rounds=3"]


def run_rounds(profile, run_dir, upto: int, resume: bool = False):
    start = session.resume_run(run_dir) if resume else session.new_run(profile, str(run_dir))
    loop = start.loop(lambda e: None)
    while loop.next_round <= upto:
        loop.run_round()
    return loop


@pytest.fixture(scope="module")
def whole(organism_cache, tmp_path_factory):
    """An uninterrupted inner-clock run: checkpoints at 0, 0.5 and 1 epoch."""
    profile = load_profile(str(MICRO_PROFILE), [f"model.cache_dir={organism_cache}", *INNER])
    path = tmp_path_factory.mktemp("clock") / "whole"
    return profile, path, run_rounds(profile, path, 2)


def test_the_switch_and_fractional_epochs_are_validated():
    assert load_profile("tiny").train.picks == "refresh" and load_profile("tiny").train.epochs == 1.0
    p = load_profile("tiny_epochs")
    assert (p.train.picks, p.train.epochs, p.rounds) == ("fixed", 0.5, 20)
    for bad, says in (("train.epochs=0", "> 0"), ("train.epochs=-0.5", ">=? 0"),
                      ("train.picks=sometimes", "refresh, fixed")):
        with pytest.raises(UsageError, match=says):
            load_profile("tiny", [bad])


def test_stream_continues_epochs_in_seeded_orders():
    # each epoch is a permutation fixed by (seed, epoch); checkpoints cut one pass into pieces
    whole = stream(10, 7, 0, 35)
    assert whole == epoch_order(10, 7, 0) + epoch_order(10, 7, 1) + epoch_order(10, 7, 2) + epoch_order(10, 7, 3)[:5]
    assert stream(10, 7, 0, 12) + stream(10, 7, 12, 23) == whole
    assert sorted(epoch_order(10, 7, 2)) == list(range(10)) and epoch_order(10, 7, 1) != epoch_order(10, 7, 2)


def test_fractional_epochs_on_refreshed_picks_train_that_share_of_the_steps(micro, tmp_path):
    path, overrides = micro
    profile = load_profile(path, overrides + ["train.batch_size=4"])
    loop = run_rounds(profile, tmp_path / "run", 0)
    picks, verdicts = loop.own_examples(loop.prev)
    examples = picks + verdicts
    per_epoch = -(-len(examples) // 4)
    for epochs in (0.5, 1.0, 1.5):
        loop.backend.p = replace(profile, train=replace(profile.train, epochs=epochs))  # the backend's own
        loop.backend.load_adapter(None)             # round 0's policy: the base model
        stats = loop.backend.train(examples, 1e-4, 1, lambda d, n: None)
        assert stats["steps"] == max(1, round(epochs * per_epoch)), epochs
    assert loop.backend.opt is None                # refreshed picks: a fresh optimiser every round


def test_inner_clock_records_its_unit_and_trains_on_round_0s_picks_only(whole):
    _profile, run, loop = whole
    fixed_file = run / "rounds" / "000" / FIXED_SET
    fixed = [(r["prompt_ids"], r["target_ids"]) for r in map(json.loads, fixed_file.read_text().splitlines())]
    picks0 = [json.loads(line) for line in (run / "rounds" / "000" / "samples.jsonl").read_text().splitlines()]
    assert [t for _p, t in fixed[:len(picks0)]] == [r["responses"][r["pick"]]["tokens"] for r in picks0]
    assert loop.fixed == fixed

    records = read_records(run)
    assert [(r["clock"], r["spacing"], r["t"]) for r in records] == [("epoch", 0.5, 0.5 * k) for k in range(3)]
    n, steps = len(fixed), max(1, round(0.5 * len(fixed) / 4))
    assert [r["train"]["steps"] for r in records[1:]] == [steps, steps]
    seen = []
    for t in range(1, 6):   # the next checkpoints' stretches, as they would be trained
        examples, external = loop.training_set(t)
        assert external == [] and len(examples) == steps * 4 and all(e in fixed for e in examples)
        seen += examples
    # one continuous pass: the checkpoints together cover every example once per epoch
    assert len(seen) >= 2 * n
    assert sorted(map(str, seen[:n])) == sorted(map(str, fixed)) == sorted(map(str, seen[n:2 * n]))
    assert seen[:n] != seen[n:2 * n]               # a new seeded order each epoch
    manifest = json.loads((run / "manifest.json").read_text())
    assert (manifest["clock"], manifest["spacing"]) == ("epoch", 0.5)
    panel = load(run)["run"]
    assert panel["solver"].unit == "epoch" and list(panel["solver"].t) == [0.0, 0.5, 1.0]


def test_resume_on_the_inner_clock_gives_the_same_numbers_and_keeps_the_picks(whole, tmp_path):
    profile, run, _loop = whole
    run_rounds(profile, tmp_path / "split", 1)
    fixed = (tmp_path / "split" / "rounds" / "000" / FIXED_SET).read_bytes()
    shutil.copytree(tmp_path / "split", tmp_path / "amnesic")
    (tmp_path / "amnesic" / "rounds" / "001" / "adapter" / "optimizer.pt").unlink()
    run_rounds(None, tmp_path / "split", 2, resume=True)
    run_rounds(None, tmp_path / "amnesic", 2, resume=True)

    keys = ("U_s", "U_v", "solver_acc", "verifier_acc", "test_acc", "train")
    numbers = {d: [[r[k] for k in keys] for r in read_records(d)] for d in (run, tmp_path / "split", tmp_path / "amnesic")}
    assert numbers[run] == numbers[tmp_path / "split"]
    # the optimiser state matters: without it the same resume drifts
    assert numbers[run][2] != numbers[tmp_path / "amnesic"][2]
    state = torch.load(run / "rounds" / "002" / "adapter" / "optimizer.pt", weights_only=True)
    assert {int(s["step"]) for s in state["state"].values()} == {sum(r["train"]["steps"] for r in read_records(run)[1:])}
    # the fixed picks are written once, with round 0, and never again
    for path in (run, tmp_path / "split"):
        assert (path / "rounds" / "000" / FIXED_SET).read_bytes() == fixed
        assert not any((path / "rounds" / f"{t:03d}" / FIXED_SET).exists() for t in (1, 2))


def test_external_data_follows_an_eta_schedule_over_checkpoints(micro, tmp_path):
    path, overrides = micro
    profile = load_profile(path, overrides + INNER + ["external.schedule=[0.5, 0.25, 0.25]"])
    loop = run_rounds(profile, tmp_path / "run", 1)
    record = read_records(tmp_path / "run")[1]
    pool = [item.id for item in loop.splits.external]
    steps = max(1, round(0.5 * len(loop.fixed) / 4))
    assert record["external_ids"] == pool[:4]
    assert record["train"]["examples"] == steps * 4 + 4            # the stretch, plus the data
    examples, ids = loop.training_set(2)                           # the next checkpoint's share
    assert ids == pool[4:6] and len(examples) == steps * 4 + 2
    assert [e for e in examples if e not in loop.fixed] != []


def test_the_labs_nll_chart_names_the_inner_clock():
    from silab.tui.widgets.plots import NllChart

    chart = NllChart()
    chart.records = [{"round": 0, "U_s": 1.0, "U_v": 0.5, "G": 0.5, "clock": "epoch", "spacing": 0.5, "t": 0.0}]
    assert "x: round = 0.5 epoch" in chart.legend().plain
    chart.records = [{"round": 0, "U_s": 1.0, "U_v": 0.5, "G": 0.5}]
    assert "epoch" not in chart.legend().plain
