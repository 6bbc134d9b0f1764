"""The lab's research-instrument actions, mixed into SilabApp: reference runs beside the run (a),
the theory sandbox (t), help (?), a screenshot (w), the fit panel's view (f), and all actions in the
command palette (ctrl+p)."""
from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import SystemCommand
from textual.screen import Screen

from silab.runs import read_records, run_labels
from silab.tui.widgets import ParamTable
from silab.tui.widgets.help import HelpScreen
from silab.tui.widgets.sandbox import SandboxScreen

PALETTE = [  # (action, title, what it does): the command palette's entries
    ("step", "Step", "run one round, then wait (extend the run after its last round)"),
    ("run", "Run", "run rounds up to the profile's last (or extend the run and run on)"),
    ("pause", "Pause", "pause after the current phase"),
    ("settings", "Settings", "σ / N / learning rate for the next round"),
    ("inject", "Inject external data", "rounds and share η, or a preset schedule"),
    ("restart", "Restart the engine", "from the last completed round"),
    ("fit_view", "Fit view", "which model describes the run ↔ the coupled fit"),
    ("add_run", "Add reference runs", "a run or a sweep's folder, drawn beside this run"),
    ("sandbox", "Theory sandbox", "edit λ, α/β, G∞, U_s0, U_v0, γ, η; the prediction beside the data"),
    ("screenshot", "Screenshot", "save the lab as SVG into the run folder"),
    ("help", "Help", "keys, symbols, panels and files"),
]


class InstrumentActions:
    """Needs from the app: run_dir, state, fit, references, refs, dialog(), log_line(),
    refresh_charts(), check_action()."""

    references: list[Path]
    refs: list[tuple[str, list[dict[str, Any]]]]

    def load_references(self) -> None:
        """(Re)read the reference runs' rounds: they may be running themselves."""
        self.refs = [(label, read_records(path)) for label, path in
                     zip(run_labels(self.references), self.references)]

    def action_add_run(self) -> None:
        def done(paths: list[Path] | None) -> None:
            if not paths:
                return
            new = [p for p in paths if p not in self.references and p != self.run_dir]
            self.references += new
            self.load_references()
            self.refresh_charts()
            self.log_line("reference runs: " + (", ".join(str(p) for p in new) or "already shown"))
        self.push_screen(self.dialog("add_run"), done)

    def action_sandbox(self) -> None:
        self.push_screen(SandboxScreen(list(self.state.records), self.fit, self.state.target_rounds))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.run_dir))

    def action_screenshot(self) -> None:
        """Save what the lab shows as SVG into the run folder (Textual's own screenshot)."""
        try:
            path = self.save_screenshot(path=str(self.run_dir),
                                        filename=f"screenshot-{time.strftime('%Y%m%d-%H%M%S')}.svg")
        except OSError as exc:
            self.log_line(f"cannot save a screenshot in {self.run_dir}: {exc}", error=True)
            return
        self.log_line(f"screenshot saved: {path}")
        self.notify(f"screenshot saved: {path}")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The lab's actions in the command palette (ctrl+p), those available now."""
        yield from super().get_system_commands(screen)
        for action, title, what in PALETTE:
            if self.check_action(action, ()):
                yield SystemCommand(title, what, partial(self.run_action, action))

    def action_fit_view(self) -> None:
        """The fit panel: which model describes the run <-> the paper's coupled fit."""
        table = self.query_one(ParamTable)
        table.view = "coupled" if table.view == "models" else "models"
        table.show(self.fit, self.state.rounds_done)
