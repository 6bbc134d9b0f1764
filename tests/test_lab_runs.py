"""Runs side by side: a sweep's folder read as its arms, `silab fit A B` in columns, `silab view
A B` and the lab's add-run key drawing reference runs with a legend."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from silab.errors import UsageError
from silab.runs import expand_runs, run_labels
from silab.theory.cli import main as fit_main
from silab.tui.app import SilabApp
from silab.tui.widgets import AccuracyChart, AddRunDialog, NllChart
from test_tui_app import run_async
from test_tui_lab import text_of

TINY = Path(__file__).parent / "data" / "recorded_tiny"


def make_sweep(tmp_path: Path) -> Path:
    """A sweep-like folder: three arms, copies of the recorded run with scaled curves."""
    sweep = tmp_path / "sweep"
    for arm, f in (("late-s0", 0.9), ("none-s0", 1.0), ("early-s0", 0.8)):
        shutil.copytree(TINY, sweep / arm)
        path = sweep / arm / "rounds.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for r in rows:
            for k in ("U_s", "U_v", "G"):
                r[k] *= f
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (sweep / "sweep.json").write_text("{}")
    return sweep


def test_a_sweep_folder_is_its_arms_control_first(tmp_path):
    sweep = make_sweep(tmp_path)
    runs = expand_runs([sweep, TINY])
    assert [p.name for p in runs] == ["none-s0", "early-s0", "late-s0", "recorded_tiny"]
    assert run_labels([sweep / "a", tmp_path / "a", sweep / "b"]) == ["sweep/a", f"{tmp_path.name}/a", "b"]
    with pytest.raises(UsageError, match="nor a folder of runs"):
        expand_runs([tmp_path / "sweep" / "none-s0" / "rounds"])
    with pytest.raises(UsageError, match="no such run folder"):
        expand_runs([tmp_path / "nope"])


def test_fit_prints_runs_side_by_side(tmp_path, capsys):
    sweep = make_sweep(tmp_path)
    assert fit_main([str(sweep)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["early-s0", "late-s0", "none-s0"]
    rows = {line[:29].strip(): line[29:].split() for line in out[1:]}
    assert rows["best forecast (rolling MSE)"][0::2] == ["exp2"] * 3
    assert rows["one shared rate"][0::3] == ["rejected"] * 3
    us = [float(x) for x in rows["coupled U_s∞"][0::3]]
    assert us[0] == pytest.approx(0.8 * us[2], rel=1e-3)      # scaled curves, scaled limits
    assert fit_main([str(sweep), str(tmp_path / "nope")]) == 2


@run_async
async def test_view_draws_reference_runs_with_a_legend(tmp_path):
    sweep = make_sweep(tmp_path)
    first, *others = expand_runs([sweep])
    app = SilabApp(first, view_only=True, references=others)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.2)
        assert [label for label, _ in app.refs] == ["early-s0", "late-s0"]
        for chart in (app.query_one(NllChart), app.query_one(AccuracyChart)):
            drawn = chart.render()
            text = "\n".join(t.plain for t in drawn.renderables)
            assert "refs 1 early-s0 2 late-s0" in text
            assert "1" in text.split("\n", 3)[3] and "2" in text.split("\n", 3)[3]


@run_async
async def test_add_run_key_checks_the_folder_and_adds_a_sweeps_arms(tmp_path):
    sweep = make_sweep(tmp_path)
    app = SilabApp(TINY, view_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, AddRunDialog)
        app.screen.query_one("#ref-path").value = str(tmp_path / "nope")
        await pilot.press("enter")
        assert isinstance(app.screen, AddRunDialog)
        assert "no such run folder" in text_of(app.screen.query_one("#error"))
        app.screen.query_one("#ref-path").value = str(sweep)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, AddRunDialog)
        assert [label for label, _ in app.refs] == ["none-s0", "early-s0", "late-s0"]
        assert all(len(records) == 11 for _, records in app.refs)
