"""Pilot tests of the lab driving an engine subprocess: step, pause, settings, inject, resume,
a crash and a restart, quitting mid-round; each checks the UI's state and what is on screen.

Each engine test runs twice: against the real engine on the micro organism (`micro` fixture from
conftest.py) and against the protocol-true stand-in in test_tui_fakeengine.py, whose timing and
crashes the tests can control.
"""
from __future__ import annotations

import asyncio
import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest
from rich.cells import cell_len

from silab.tui.app import SilabApp
from silab.tui.widgets import InjectDialog, QuitDialog, SettingsDialog
from test_tui_fakeengine import fake_argv, write_profile

RECORDED = Path(__file__).parent / "data" / "recorded_run"
TARGET = 4  # rounds in the test profiles: rounds 0..4
SVG = "{http://www.w3.org/2000/svg}"


def run_async(fn):
    """Run an async test on a fresh event loop (no asyncio plugin needed)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def screen_text(app: SilabApp) -> str:
    """What the terminal shows now, as plain text (no colour: the screen must read without it).

    Read back from Textual's public screenshot (`App.export_screenshot`, an SVG from Rich): each
    run of text is a <text> clipped to its terminal line, at x = column * cell width, with its
    spaces written as no-break spaces; runs of blanks are not written at all.
    """
    root = ElementTree.fromstring(app.export_screenshot())
    rows: dict[int, list[tuple[int, str]]] = {}
    for node in root.iter(f"{SVG}text"):
        line = re.search(r"-line-(\d+)\)", node.get("clip-path", ""))
        if line is None or not node.text.strip("\n"):  # the window title; a line's end
            continue
        cell = float(node.get("textLength")) / len(node.text)
        rows.setdefault(int(line[1]), []).append((round(float(node.get("x")) / cell),
                                                   node.text.replace("\xa0", " ")))
    out = []
    for y in range(app.size.height):
        text = ""
        for x, run in sorted(rows.get(y, [])):
            text += " " * (x - cell_len(text)) + run
        out.append(text)
    return "\n".join(out)


async def wait_until(pilot, cond, what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    if os.environ.get("TUI_TEST_TRACE"):
        print("waiting for", what, pilot.app.state.engine, flush=True)
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}; screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.02)
        if os.environ.get("TUI_TEST_TRACE"):
            st = pilot.app.state
            print(" ", st.engine, st.rounds_done, st.progress, flush=True)
    await pilot.pause()  # the messages the state change queued, handled


async def shows(pilot, *words: str, timeout: float = 10.0) -> str:
    """Wait until every word is on screen (drawn, not only in the state); the screen's text."""
    app = pilot.app
    await wait_until(pilot, lambda: all(w in screen_text(app) for w in words), f"{words} on screen",
                     timeout)
    return screen_text(app)


@dataclass
class Engine:
    kind: str
    profile: str
    overrides: list[str] = field(default_factory=list)

    def app(self, run_dir: Path, *, resume: bool = False, **kwargs) -> SilabApp:
        if self.kind == "real":
            if resume:
                return SilabApp(run_dir, **kwargs)
            return SilabApp(run_dir, new_profile=self.profile, overrides=self.overrides, **kwargs)
        profile = None if resume else self.profile
        return SilabApp(run_dir, engine_command=lambda first: fake_argv(
            run_dir, profile if first else None, self.overrides), **kwargs)


def _engine(kind: str, request, tmp_path, monkeypatch, overrides=()) -> Engine:
    if kind == "real":  # the real engine subprocess on the micro organism (tests/conftest.py)
        profile, base = request.getfixturevalue("micro")
        return Engine("real", profile, [*base, f"rounds={TARGET}", *overrides])
    monkeypatch.setenv("FAKE_TICK", "0.02")
    monkeypatch.delenv("FAKE_CRASH_ROUND", raising=False)
    return Engine("fake", str(write_profile(tmp_path / "fake.toml", rounds=TARGET)), list(overrides))


@pytest.fixture(params=["fake", "real"])
def engine(request, tmp_path, monkeypatch) -> Engine:
    return _engine(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=["fake", "real"])
def slow_engine(request, tmp_path, monkeypatch) -> Engine:
    """Rounds long enough to press keys in the middle of one."""
    if request.param == "real":  # more prompts and samples: the micro round takes ~1 s
        return _engine("real", request, tmp_path, monkeypatch,
                       ["task.n_prompts=64", "task.n_test=64", "sampling.n_samples=16"])
    eng = _engine("fake", request, tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_TICK", "0.15")
    return eng


def idle(app: SilabApp):
    return lambda: app.state.engine == "idle"


# ---------------------------------------------------------------------------------------------

@run_async
async def test_step_a_round_then_wait(engine, tmp_path):
    run = tmp_path / "run"
    app = engine.app(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, idle(app), "the engine to wait")
        assert app.state.settings["n_samples"] == 4 and app.state.target_rounds == TARGET
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 1 and app.state.engine == "idle",
                         "round 0")
        await shows(pilot, "[waiting]", f"round 0/{TARGET}", "next round 1", "round 0 saved")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 2 and app.state.engine == "idle",
                         "round 1")
        assert [r["round"] for r in app.state.records] == [0, 1]
        assert app.check_action("pause", ()) is None and app.check_action("step", ()) is True
        await pilot.press("q")  # idle: quits without asking, stopping the engine cleanly
        await wait_until(pilot, lambda: not app.is_running, "the app to exit", 30)
    assert app.client.returncode == 0
    assert len((run / "rounds.jsonl").read_text().splitlines()) == 2


@run_async
async def test_pause_mid_round_then_resume(slow_engine, tmp_path):
    app = slow_engine.app(tmp_path / "run")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, idle(app), "the engine to wait")
        await pilot.press("r")
        await wait_until(pilot, lambda: app.state.progress is not None, "a phase to start")
        await pilot.press("p")
        assert app.state.engine in ("pausing", "paused")
        await wait_until(pilot, lambda: app.state.engine == "paused", "the pause", 120)
        done = app.state.rounds_done
        assert done <= TARGET
        await shows(pilot, "[paused]", f"paused · next round {done}")
        await pilot.press("n")  # the interrupted round starts again from its beginning
        await wait_until(pilot, lambda: app.state.rounds_done == done + 1 and
                         app.state.engine == "idle", "the resumed round", 120)
        assert [r["round"] for r in app.state.records] == list(range(done + 1))


@run_async
async def test_settings_and_injection(engine, tmp_path):
    run = tmp_path / "run"
    app = engine.app(run)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, idle(app), "the engine to wait")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 1 and app.state.engine == "idle",
                         "round 0")

        await pilot.press("s")
        assert isinstance(app.screen, SettingsDialog)
        await pilot.press("1", ".", "5", "enter")  # σ > 1: refused on the spot
        assert isinstance(app.screen, SettingsDialog)
        await shows(pilot, "verify.sigma", "<= 1")
        await pilot.press("backspace", "backspace", "backspace", "0", ".", "7",
                          "tab", "8", "enter")  # tab selects the next field's text: 8 replaces it
        await wait_until(pilot, lambda: app.state.settings.get("sigma") == 0.7, "settings_changed")
        assert app.state.settings["n_samples"] == 8
        assert "sigma = 0.7" in (run / "profile.toml").read_text()
        await shows(pilot, "σ 0.7 N 8")

        await pilot.press("i")
        assert isinstance(app.screen, InjectDialog)
        await pilot.press("0", "tab", "0", ".", "2", "enter")  # round 0 never trains
        await shows(pilot, "first open round")
        await pilot.press("shift+tab", "backspace", "2", "-", "3", "enter")
        await wait_until(pilot, lambda: isinstance(app.state.schedule, list), "plan_changed")
        assert app.state.schedule[1:3] == [0.2, 0.2]
        await shows(pilot, "r2 .20  r3 .20")
        assert "0.2" in (run / "profile.toml").read_text()

        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 2 and app.state.engine == "idle",
                         "round 1")
        assert app.state.records[-1]["sigma"] == 0.7 and app.state.records[-1]["n_samples"] == 8


@run_async
async def test_resume_shows_history_at_once(engine, tmp_path):
    run = tmp_path / "run"
    app = engine.app(run)
    async with app.run_test() as pilot:
        await wait_until(pilot, idle(app), "the engine to wait")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 1 and app.state.engine == "idle", "r0")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 2 and app.state.engine == "idle", "r1")
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, "exit", 30)

    again = engine.app(run, resume=True)
    async with again.run_test() as pilot:
        # before the engine has said a word: the history is on screen
        assert again.state.rounds_done == 2
        # drawn from the run folder, whatever the engine is doing (a busy machine may take a moment
        # to lay the screen out)
        await shows(pilot, "round 1 saved", f"round 1/{TARGET}")
        await wait_until(pilot, idle(again), "the resumed engine")
        assert again.state.next_round == 2
        await pilot.press("n")
        await wait_until(pilot, lambda: again.state.rounds_done == 3, "round 2")


@run_async
async def test_engine_death_keeps_ui_and_restart_resumes(tmp_path, monkeypatch, request):
    eng = _engine("fake", request, tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_CRASH_ROUND", "1")
    app = eng.app(tmp_path / "run")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, idle(app), "the engine to wait")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 1 and app.state.engine == "idle", "r0")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.engine == "died", "the crash")
        await shows(pilot, "ENGINE DIED", "code 3", "CUDA out of memory")
        assert app.check_action("restart", ()) is True and app.check_action("step", ()) is None
        assert app.state.rounds_done == 1  # nothing completed was lost

        monkeypatch.delenv("FAKE_CRASH_ROUND")
        await pilot.press("e")
        await wait_until(pilot, idle(app), "the restarted engine")
        assert app.state.next_round == 1
        await pilot.press("n")
        await wait_until(pilot, lambda: app.state.rounds_done == 2 and app.state.engine == "idle", "r1")


@run_async
async def test_quit_mid_round_asks_first(slow_engine, tmp_path):
    run = tmp_path / "run"
    app = slow_engine.app(run, stop_grace=30)
    async with app.run_test() as pilot:
        await wait_until(pilot, idle(app), "the engine to wait")
        await pilot.press("r")
        await wait_until(pilot, lambda: app.state.rounds_done >= 1 and app.state.progress is not None,
                         "a phase of round 1", 120)
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("n")  # keep running
        assert not isinstance(app.screen, QuitDialog) and app.client.alive
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitDialog), "the question")
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, "exit", 60)
    assert app.client.returncode == 0
    completed = sorted(p.name for p in (run / "rounds").iterdir() if p.name.isdigit())
    lines = (run / "rounds.jsonl").read_text().splitlines()
    assert len(completed) >= 1 and len(lines) == len(completed)  # nothing completed was lost


@run_async
async def test_view_only_has_no_engine_keys():
    app = SilabApp(RECORDED, view_only=True)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.client is None
        assert app.state.rounds_done == 6
        for action in ("step", "run", "pause", "settings", "inject", "restart"):
            assert app.check_action(action, ()) is False
        await pilot.press("n", "s")
        assert app.client is None and not isinstance(app.screen, SettingsDialog)
        assert "n Step" not in await shows(pilot, "[read-only]", "q Quit")
        await pilot.press("q")
    assert app.return_code == 0


def test_run_app_rejects_bad_input(tmp_path):
    from silab.errors import UsageError
    from silab.tui.app import run_app

    with pytest.raises(UsageError, match="not a silab run folder"):
        run_app(run_dir=tmp_path, view_only=True)
    with pytest.raises(UsageError, match="no such run folder"):
        run_app(run_dir=tmp_path / "nope", resume=True)
    with pytest.raises(UsageError, match="unknown profile"):
        run_app(run_dir=tmp_path / "new", new_profile="no-such-profile")
    with pytest.raises(UsageError, match="verify.sigma"):
        run_app(run_dir=tmp_path / "new", new_profile=str(write_profile(tmp_path / "p.toml")),
                overrides=["verify.sigma=2"])
    with pytest.raises(UsageError, match="exists and is not empty"):
        run_app(run_dir=RECORDED, new_profile=str(write_profile(tmp_path / "p.toml")))


def test_ui_process_never_imports_torch():
    """Open and fit a run, then steer a (fake) engine: torch and the engine stay out of sys.modules."""
    code = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from silab.tui.app import SilabApp
from test_tui_fakeengine import fake_argv, write_profile
import tempfile

async def main():
    app = SilabApp(Path({str(RECORDED)!r}), view_only=True)
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
    tmp = Path(tempfile.mkdtemp())
    prof = write_profile(tmp / "p.toml")
    app = SilabApp(tmp / "run", engine_command=lambda first: fake_argv(tmp / "run", prof if first else None))
    async with app.run_test() as pilot:
        while app.state.engine != "idle":
            await pilot.pause(0.05)
        await pilot.press("n")
        while app.state.rounds_done < 1:
            await pilot.pause(0.05)

asyncio.run(main())
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "peft", "vllm")
             or m.startswith("silab.engine"))
print(",".join(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "FAKE_TICK": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"UI imported: {out.stdout}"
