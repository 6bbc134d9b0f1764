"""The lab: a Textual app that shows a run and drives its engine subprocess.

The engine is a child process (`python -m silab.engine`) spoken to in JSON lines, so the UI never
imports torch and survives whatever the GPU does. Everything on screen is derived from
`RunState`, which folds the run folder and then each live event; the widgets only draw it.

Entry point for the CLI: `run_app(run_dir=..., new_profile=..., overrides=..., resume=...,
view_only=...)`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer

from silab import protocol as P
from silab.errors import UsageError
from silab.runs import RunDir, is_run, read_records
from silab.tui.client import EngineClient, engine_argv
from silab.tui.fitting import FitSummary, compare_records, fit_records
from silab.tui.messages import EngineEvent, EngineExited, EngineOutput, FitReady
from silab.tui.state import LogLine, RunState, read_profile
from silab.tui.instrument import InstrumentActions
from silab.tui.steering import SteeringActions
from silab.tui.widgets import (AccuracyChart, EventLog, HistoryTable, NllChart, ParamTable, RoundPanel,
                               StatusLine)

HISTORY_LINES = 400        # recorded events replayed into the log on open
PROGRESS_COALESCE_S = 0.05  # progress ticks faster than this are merged: keys stay snappy

EngineCommand = Callable[[bool], Sequence[str]]  # first start? -> argv


class SilabApp(InstrumentActions, SteeringActions, App[int]):
    """One run on screen; with an engine unless view_only."""

    CSS_PATH = "silab.tcss"
    TITLE = "silab"
    ENABLE_COMMAND_PALETTE = True
    # Wide terminals get a third panel (recent rounds); 80 columns keep the essentials.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("n", "step", "Step"),
        Binding("r", "run", "Run"),
        Binding("p", "pause", "Pause"),
        Binding("s", "settings", "σ/N/lr"),
        Binding("i", "inject", "Inject"),
        Binding("e", "restart", "Restart"),
        Binding("f", "fit_view", "Fit"),
        Binding("a", "add_run", "Add run", show=False),
        Binding("t", "sandbox", "Theory", show=False),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("w", "screenshot", "Screenshot", show=False),
        Binding("q", "quit_lab", "Quit"),
        Binding("ctrl+q", "quit_lab", "Quit", show=False, priority=True),
    ]

    def __init__(self, run_dir: Path, *, new_profile: str | None = None,
                 overrides: Sequence[str] = (), view_only: bool = False,
                 profile_data: dict[str, Any] | None = None,
                 engine_command: EngineCommand | None = None,
                 references: Sequence[Path] = (),
                 stop_grace: float = 10.0) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.new_profile = new_profile
        self.overrides = list(overrides)
        self.view_only = view_only
        self.profile_data = profile_data or {}
        self.stop_grace = stop_grace
        self._engine_command = engine_command
        self.client: EngineClient | None = None
        self.fit: FitSummary | None = None
        self.exit_code = 0
        self._stopping = False
        self._pending_progress: dict[str, Any] | None = None
        self._history: list[dict[str, Any]] = []
        self._binding_sig: tuple = ()
        self.references: list[Path] = [Path(p) for p in references]
        self.refs: list[tuple[str, list[dict[str, Any]]]] = []
        self.state = self._load_state()
        self.load_references()

    # ------------------------------------------------------------------ state from disk
    def _load_state(self) -> RunState:
        if is_run(self.run_dir):
            state, self._history = RunState.from_run_dir(self.run_dir)
            self.profile_data = read_profile(self.run_dir) or self.profile_data
        else:
            state = RunState(run_dir=self.run_dir, name=self.run_dir.name)
            state.load_profile(self.profile_data)
        return state

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="plots"):
            yield NllChart(id="nll")
            yield AccuracyChart(id="acc")
        with Horizontal(id="middle"):
            yield ParamTable(id="params")
            yield HistoryTable(id="history")
            yield RoundPanel(id="round")
        yield EventLog(id="log")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        log = self.query_one(EventLog)
        replay = RunState(run_dir=self.run_dir)
        lines = [ln for ln in (replay.apply(ev) for ev in self._history) if ln is not None]
        self.state.t0 = replay.t0 if replay.t0 is not None else self.state.t0
        if len(lines) > HISTORY_LINES:
            log.add(self.state, LogLine(None, P.LOG, f"… {len(lines) - HISTORY_LINES} earlier events"))
        for line in lines[-HISTORY_LINES:]:
            log.add(self.state, line)
        if self.view_only:
            self.state.engine = "view"
            self.sub_title = "read-only"
        self.refresh_charts()
        self.refresh_panels()
        self.start_fit()
        if not self.view_only:
            self.run_worker(self.start_engine(first=True), group="engine")

    async def on_unmount(self) -> None:
        # However the app ends, an engine still running gets EOF and stops after its phase; it
        # is never killed from here (a lost SSH session must not cut a training phase short).
        if self.client is not None and self.client.alive:
            self.client.detach()
            await self.client.wait(5.0)

    # ------------------------------------------------------------------ drawing
    def refresh_panels(self) -> None:
        self.query_one(StatusLine).show(self.state)
        self.query_one(RoundPanel).show(self.state)
        self.query_one(ParamTable).show(self.fit, self.state.rounds_done)
        self.query_one(HistoryTable).show(self.state)
        # The footer recomposes on refresh_bindings: only ask when a key's availability changed.
        sig = tuple(self.check_action(a, ()) for a in self.ENGINE_ACTIONS)
        if sig != self._binding_sig:
            self._binding_sig = sig
            self.refresh_bindings()

    def refresh_charts(self) -> None:
        records, target = self.state.records, self.state.target_rounds
        self.query_one(NllChart).set_data(records, target, fit=self.fit, refs=self.refs)
        self.query_one(AccuracyChart).set_data(records, target, refs=self.refs)

    def log_line(self, text: str, *, error: bool = False, kind: str = "ui") -> None:
        """A line from the UI itself: unstamped (stamps are event times, from the engine)."""
        self.query_one(EventLog).add(self.state, LogLine(None, kind, text, error))

    # ------------------------------------------------------------------ fit (worker thread)
    def start_fit(self) -> None:
        records = list(self.state.records)
        self.run_worker(lambda: self._fit(records), thread=True, exclusive=True, group="fit",
                        exit_on_error=False)

    def _fit(self, records: list[dict[str, Any]]) -> None:
        """The coupled fit first (milliseconds), then every model compared (about a second)."""
        fit = fit_records(records, compare=False)
        self.post_message(FitReady(fit, len(records)))
        comparison = compare_records(records)
        if comparison is not None:
            self.post_message(FitReady(replace(fit, comparison=comparison), len(records)))

    def on_fit_ready(self, message: FitReady) -> None:
        if message.n_rounds != self.state.rounds_done:
            return  # a newer round arrived meanwhile; its own fit is on the way
        self.fit = message.fit
        self.refresh_charts()
        self.refresh_panels()

    # ------------------------------------------------------------------ engine process
    def engine_argv(self, first: bool) -> list[str]:
        if self._engine_command is not None:
            return list(self._engine_command(first))
        fresh = self.new_profile is not None and (first or not is_run(self.run_dir))
        return engine_argv(self.run_dir, self.new_profile if fresh else None,
                           self.overrides if fresh else ())

    async def start_engine(self, first: bool = False) -> None:
        self.state.engine = "starting"
        self.state.last_error = None
        self.client = EngineClient(
            self.engine_argv(first),
            on_event=self._engine_event,
            on_output=lambda line: self.post_message(EngineOutput(line)),
            on_exit=lambda rc: self.post_message(EngineExited(rc)))
        self.refresh_panels()
        try:
            await self.client.start()
        except OSError as exc:
            self.post_message(EngineExited(None, f"cannot start the engine: {exc}"))
            return
        self.log_line("engine started")

    def _engine_event(self, event: dict[str, Any]) -> None:
        """Client callback: merge bursts of progress ticks, keep every other event in order."""
        if event.get("event") == P.PROGRESS:
            if self._pending_progress is None:
                self.set_timer(PROGRESS_COALESCE_S, self._flush_progress)
            self._pending_progress = event
            return
        self._flush_progress()
        self.post_message(EngineEvent(event))

    def _flush_progress(self) -> None:
        if self._pending_progress is not None:
            self.post_message(EngineEvent(self._pending_progress))
            self._pending_progress = None

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        line = self.state.apply(event)
        if line is not None:
            self.query_one(EventLog).add(self.state, line)
        if event.get("event") == P.PROGRESS:  # the hot path: only the round panel moves
            self.query_one(RoundPanel).show(self.state)
            return
        if event.get("event") == P.ROUND_FINISHED:
            self.load_references()
            self.refresh_charts()
            self.start_fit()
        if event.get("event") in (P.RUN_STARTED, P.SETTINGS_CHANGED, P.PLAN_CHANGED):
            # the engine has (re)written profile.toml: it is the resolved truth for validation
            profile = read_profile(self.run_dir)
            if profile:
                self.profile_data = profile
                if event.get("event") == P.RUN_STARTED:
                    self.state.load_profile(profile)
        self.refresh_panels()

    def on_engine_output(self, message: EngineOutput) -> None:
        self.query_one(EventLog).add(self.state, LogLine(None, "stderr", message.line))

    def on_engine_exited(self, message: EngineExited) -> None:
        rc = message.returncode
        clean = rc == 0 and not message.reason
        self.state.engine = "exited" if clean else "died"
        self.state.round, self.state.progress, self.state.phases_done = None, None, {}
        # The folder, not the event stream, says what completed.
        if is_run(self.run_dir):
            for rec in read_records(self.run_dir):
                self.state.add_record(rec)
            if self.state.records:
                self.state.next_round = self.state.records[-1]["round"] + 1
        if clean:
            self.log_line("engine exited")
        else:
            why = message.reason or f"engine exited with code {rc}"
            tail = list(self.client.stderr_tail)[-6:] if self.client else []
            self.state.last_error = self.state.last_error or why
            self.log_line(why + ("\n" + "\n".join(tail) if tail else ""), error=True)
            if not self._stopping:
                self.log_line(f"press e to restart the engine from round {self.state.next_round or 0}")
        self.refresh_charts()
        self.refresh_panels()
        if self._stopping:
            self.exit(self.exit_code)

    async def action_quit(self) -> None:
        await self.action_quit_lab()

    async def action_quit_lab(self) -> None:
        if self._stopping:  # second q while stopping: do not wait any longer
            if self.client is not None:
                self.client.kill()
            self.exit(self.exit_code)
            return
        if self.view_only or self.client is None or not self.client.alive:
            self.exit(self.exit_code)
            return
        if self.state.round_running:
            def answer(stop: bool | None) -> None:
                if stop:
                    self.stop_engine_and_exit()
            self.push_screen(self.dialog("quit"), answer)
            return
        self.stop_engine_and_exit()

    def stop_engine_and_exit(self) -> None:
        self._stopping = True
        self.state.engine = "stopping"
        self.log_line("stopping the engine (after its current phase)…  q again to quit at once")
        self.refresh_panels()

        async def stop() -> None:
            assert self.client is not None
            await self.client.stop(self.stop_grace)
            self.exit(self.exit_code)  # on_engine_exited may have done it already; harmless
        self.run_worker(stop(), group="engine")


# ---------------------------------------------------------------------------------------------
# entry point

def run_app(*, run_dir: Path | None = None, new_profile: str | None = None,
            overrides: Sequence[str] = (), resume: bool = False, view_only: bool = False,
            references: Sequence[Path] = ()) -> int:
    """Open the lab on run_dir; returns the exit code. Bad input raises UsageError first.

    new run (default): the profile (NAME or PATH; None = the default profile) and --set overrides
      are validated here exactly as `silab run` does, then the engine is started with --new.
      run_dir None = RUN_ROOT/NAME-YYYYmmdd-HHMMSS from the profile, as `silab run` names it.
    resume=True: run_dir must be a run; its history is shown at once and the engine resumes it.
    view_only=True: run_dir must be a run; no engine, the steering keys are absent.
    references: runs drawn beside this one (checked by silab.runs.expand_runs).
    """
    if (view_only or resume) and run_dir is None:
        raise UsageError("a run folder is needed to resume or view a run")
    profile_data: dict[str, Any] = {}
    if view_only or resume:
        run_dir = RunDir.check_run(run_dir)
        app = SilabApp(run_dir, view_only=view_only, references=references)
    else:
        from silab.config import load_profile, resolve_profile_path

        profile = load_profile(new_profile, list(overrides))
        if run_dir is None:
            from silab.runs.store import default_run_dir

            run_dir = default_run_dir(profile.run_root, profile.name)
        run_dir = RunDir.check_new(run_dir)
        profile_data = profile.to_dict()
        app = SilabApp(run_dir, new_profile=str(resolve_profile_path(new_profile)),
                       overrides=overrides, profile_data=profile_data)
    result = app.run()
    return int(result or 0)


main = run_app
