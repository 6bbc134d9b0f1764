"""The lab as a research instrument: the fit panel's model comparison, the finished run and its
extension, help, the command palette and screenshots (pilot tests, public Textual API only)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static

from silab.tui.app import SilabApp
from silab.tui.state import fmt_num
from silab.tui.widgets import ExtendDialog, ParamTable, RoundPanel, StatusLine
from silab.tui.widgets.dialogs import parse_more_rounds
from silab.tui.widgets.help import HelpScreen
from test_tui_app import engine, idle, run_async, wait_until, TARGET  # noqa: F401

TINY = Path(__file__).parent / "data" / "recorded_tiny"


def text_of(widget: Static, width: int | None = None) -> str:
    """A Static's content as plain text, rendered at the widget's width."""
    console = Console(width=width or max(widget.size.width, 40), record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def copy_run(tmp_path: Path) -> Path:
    run = tmp_path / "tiny"
    shutil.copytree(TINY, run)
    return run


@run_async
async def test_fit_panel_says_which_model_describes_the_run(tmp_path):
    app = SilabApp(TINY, view_only=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.fit is not None and app.fit.comparison is not None,
                         "the model comparison")
        panel = app.query_one(ParamTable)
        text = text_of(panel)
        for model in ("coupled", "exp", "power", "exp2"):
            assert model in text
        best = app.fit.comparison.best
        assert f"★{best}" in text and "one λ rejected" in text
        assert "U_s∞" in text and "acc∞" in text and best in text.split("U_s∞")[1]
        await pilot.press("f")                          # the paper's coupled fit
        text = text_of(panel)
        assert "coupled · 11 rounds" in text and "α/β" in text and "held-out MSE" in text
        await pilot.press("f")
        assert "★" in text_of(panel)


@run_async
async def test_help_palette_and_screenshot(tmp_path):
    run = copy_run(tmp_path)
    app = SilabApp(run, view_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = text_of(app.screen.query_one("#help Static"), 100)
        for word in ("U_s", "U_v", "G∞", "α/β", "λ", "η", "rounds.jsonl", str(run)):
            assert word in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")                          # closes help, does not quit the lab
        assert app.is_running and not isinstance(app.screen, HelpScreen)

        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Fit view", "Help", "Screenshot"} <= titles and "Step" not in titles  # read-only

        await pilot.press("w")
        await wait_until(pilot, lambda: any(run.glob("screenshot-*.svg")), "the screenshot", 10)
        shots = list(run.glob("screenshot-*.svg"))
        assert len(shots) == 1 and shots[0].stat().st_size > 10_000
        assert "<svg" in shots[0].read_text()[:200]


def test_more_rounds_are_checked():
    assert parse_more_rounds(" 3 ") == (3, None)
    for bad in ("0", "-2", "x", "1.5", "5000"):
        assert parse_more_rounds(bad)[0] is None


@run_async
async def test_finished_run_says_so_and_extends(engine, tmp_path):
    run = tmp_path / "run"
    app = engine.app(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, idle(app), "the engine to wait")
        await pilot.press("r")
        await wait_until(pilot, lambda: app.state.rounds_done == TARGET + 1 and idle(app)(),
                         "the profile's rounds")
        assert app.state.complete
        assert "[complete]" in text_of(app.query_one(StatusLine), 100)
        head = text_of(app.query_one(RoundPanel), 60)
        assert f"run complete · rounds 0–{TARGET}" in head and "n/r: extend" in head
        assert f"next round {TARGET + 1} of {TARGET}" not in head
        assert app.check_action("run", ()) and "Run" in {c.title for c in
                                                          app.get_system_commands(app.screen)}
        await pilot.press("n")
        assert isinstance(app.screen, ExtendDialog)
        await pilot.press("2", "enter")                 # two more rounds; n runs one of them
        await wait_until(pilot, lambda: app.state.rounds_done == TARGET + 2 and idle(app)(),
                         "one more round")
        assert app.state.target_rounds == TARGET + 2 and not app.state.complete
        assert f"rounds = {TARGET + 2}" in (run / "profile.toml").read_text()
        await pilot.press("r")                          # the rest, no question asked
        await wait_until(pilot, lambda: app.state.rounds_done == TARGET + 3 and idle(app)(),
                         "the extended run")
        assert app.state.complete
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, "the app to exit", 30)


@run_async
async def test_theory_sandbox_is_seeded_from_the_fit_and_redraws_as_you_type():
    from silab.theory.cross import simulate_identified
    from silab.tui.widgets.sandbox import SandboxScreen

    app = SilabApp(TINY, view_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: app.fit is not None, "the fit")
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, SandboxScreen)
        assert float(screen.query_one("#sb-lam").value) == pytest.approx(app.fit.param("λ"), rel=1e-3)
        assert float(screen.query_one("#sb-ab").value) == pytest.approx(app.fit.param("α/β"), rel=1e-3)
        out = screen.query_one("#sandbox-out")
        before = text_of(out)
        assert f"U_s∞ {fmt_num(app.fit.param('U_s∞'))}" in before   # γ = 0: the fit's own limit

        screen.query_one("#sb-gamma").value = "0.5"
        screen.query_one("#sb-eta").value = "early"
        v = screen.values()
        expected = simulate_identified(float(v["lam"]), float(v["ab"]), float(v["ginf"]),
                                       float(v["us0"]), float(v["uv0"]), 0.5, "early", 12, 10)
        await wait_until(pilot, lambda: "Ση 1" in text_of(out), "the redraw", 10)
        assert f"U_s∞ {fmt_num(expected.U_s_inf)}" in text_of(out)
        assert expected.U_s_inf < app.fit.param("U_s∞")            # the lift lowers the limit
        chart = screen.query_one("#sandbox-chart")
        assert chart.fit.param("U_s∞") == expected.U_s_inf

        screen.query_one("#sb-ab").value = "0.5"                     # outside the theory
        await wait_until(pilot, lambda: "✗ need α/β > 1" in text_of(out), "the refusal", 10)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: text_of(out) == before, "the fit's values back", 10)
        await pilot.press("escape")
        assert not isinstance(app.screen, SandboxScreen)
