"""The text panels: status line, fitted-parameter table, current round, event log.

All of them render plain words and glyphs (✓ ▸ █ ░), so a terminal without colour, or a
screenshot in a bug report, still says everything.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import RichLog, Static

from silab.protocol import PHASE_LABEL, PHASE_UNIT, PHASES
from silab.tui.fitting import FitSummary
from silab.tui.state import (ENGINE_WORDS, LogLine, RunState, describe_schedule, fmt_duration,
                             fmt_num, fmt_pct)

if TYPE_CHECKING:
    from silab.tui.fitting import Comparison


def text_bar(fraction: float | None, width: int) -> str:
    """[█████░░░░░] — a bar made of two glyphs, readable without colour."""
    width = max(width, 4)
    if fraction is None:
        return "░" * width
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


def settings_text(settings: dict) -> str:
    parts = []
    if "sigma" in settings:
        parts.append(f"σ {fmt_num(settings['sigma'])}")
    if "n_samples" in settings:
        parts.append(f"N {settings['n_samples']}")
    if "lr" in settings:
        parts.append(f"lr {fmt_num(settings['lr'])}")
    return " ".join(parts) or "—"


class StatusLine(Static):
    """One line: run, profile, engine state (as a word), rounds done, next-round settings."""

    def show(self, state: RunState) -> None:
        word = ENGINE_WORDS.get(state.engine, state.engine)
        text = Text()
        text.append(" silab ", style="bold reverse")
        text.append(f" {state.name}")
        if state.profile_name and state.profile_name != state.name:
            text.append(f" ({state.profile_name})", style="dim")
        text.append(" │ ")
        if state.complete and state.engine in ("idle", "finished"):
            word = "complete"
        text.append(f"[{word}]", style="bold red" if state.engine == "died" else "bold")
        target = f"/{state.target_rounds}" if state.target_rounds is not None else ""
        last = str(state.records[-1]["round"]) if state.records else "—"
        text.append(f" │ round {last}{target}")
        text.append(f" │ {settings_text(state.settings)}")
        text.no_wrap, text.overflow = True, "ellipsis"
        self.update(text)


class ParamTable(Static):
    """The fit panel. Two views (key f): "models" says which model describes the run (R² per
    series, forecast error, the shared-rate test, the best model's limits); "coupled" shows the
    paper's model: λ, the limits, α/β, R² and held-out error, with 95 % intervals."""

    view = "models"
    _args: tuple = (None, 0)

    def on_resize(self) -> None:  # lines are laid out for the panel's width
        self.show(*self._args)

    def show(self, fit: FitSummary | None, n_rounds: int) -> None:
        self._args = (fit, n_rounds)
        comparison = fit.comparison if fit is not None else None
        if self.view == "models" and comparison is not None:
            self.update(self._models(comparison))
        else:
            self.update(self._coupled(fit, n_rounds))

    def _coupled(self, fit: FitSummary | None, n_rounds: int):
        if fit is None or not fit.ok:
            # No numbers to tabulate: say why in full (a truncated reason helps nobody).
            note = "fitting…" if fit is None else fit.note
            return Group(Text(f"coupled fit · {n_rounds} rounds", style="bold"),
                         Text(f"no fit: {note}" if fit is not None else note),
                         Text("λ, limits, α/β, R² and held-out error appear here "
                              "once the fit succeeds.", style="dim"))
        table = Table(box=None, padding=(0, 1), show_edge=False, expand=False, pad_edge=False)
        table.add_column(f"coupled · {fit.n_rounds} rounds", no_wrap=True, overflow="ellipsis",
                         min_width=12)
        table.add_column("value", justify="right", no_wrap=True, min_width=6)
        table.add_column("95% interval", justify="right", no_wrap=True, overflow="ellipsis", ratio=1)
        rows = {r.name: r for r in fit.params}
        for name in ("λ", "U_s∞", "U_v∞", "G∞", "α/β"):
            row = rows.get(name)
            if row is None or row.value is None:
                table.add_row(name, "—", "")
                continue
            table.add_row(name, fmt_num(row.value), interval_text(row.lo, row.hi))
        table.add_row("R² (worst)", fmt_num(fit.r2), "")
        table.add_row("held-out MSE", fmt_num(fit.heldout), "")
        return table

    def _models(self, c: Comparison):
        if not c.ok:
            return Group(Text(f"which model · {c.n_rounds} rounds", style="bold"),
                         Text(c.message),
                         Text("coupled, exp, power and exp2 are compared here from 5 rounds on; "
                              "f shows the coupled fit.", style="dim"))
        width = self.content_size.width or 40
        table = Table(box=None, padding=(0, 1), show_edge=False, expand=False, pad_edge=False)
        table.add_column(f"{c.n_rounds} rounds", no_wrap=True, min_width=8)
        for label in ("R² U_s", "U_v", "G"):
            table.add_column(label, justify="right", no_wrap=True)
        table.add_column("roll MSE" if c.scored_by == "rolling" else "last MSE", justify="right",
                         no_wrap=True)
        for model, f in c.fits.items():
            mark = "★" if model == c.best else " "
            flag = "" if f.converged else "~"
            table.add_row(f"{mark}{model}{flag}", *(fmt_r2(f.r2.get(s)) for s in
                                                     ("solver", "verifier", "gap")),
                          fmt_num(c.forecast_mse.get(model), 2),
                          style="bold" if model == c.best else "")
        lines = [table, _line(verdict_text(c, width))]
        for key, label in (("U_s", "U_s∞"), ("accuracy", "acc∞")):
            lines.append(_line(limit_text(c, key, label)))
        return Group(*lines)


def interval_text(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f"{fmt_num(lo)} … {fmt_num(hi)}"


def verdict_text(c: Comparison, width: int = 80) -> str:
    """The panel's one line: the model that forecasts best (★ in the table), the shared-rate test."""
    if width >= 90:
        return c.verdict()
    short = width < 55
    parts = []
    if c.best:
        err, coupled = c.forecast_mse.get(c.best), c.forecast_mse.get("coupled")
        ratio = (f" ({coupled / err:.1f}×{'' if short else ' coupled'})"
                 if c.best != "coupled" and coupled and err else "")
        parts.append(f"★ {'best' if short else 'forecasts best'}{ratio}")
    if c.shared is not None:
        parts.append(f"one λ {'rejected' if c.shared_rejected else 'not rejected'} "
                     f"p {c.shared.p:.1g}")
    return " · ".join(parts)


def limit_text(c: Comparison, key: str, label: str) -> str:
    """'U_s∞ 0.393 [0.282, 0.504] exp2': a limit, its 95 % interval, the model it is from."""
    e = c.limits.get(key)
    if e is None:
        return f"{label} —"
    note = c.limit_notes.get(key, "")
    if note.startswith("not identified"):
        return f"{label} — ({note})"
    show = (lambda x: fmt_pct(x, 1)) if key == "accuracy" else fmt_num
    ci = f" [{show(e.lo)}, {show(e.hi)}]" if math.isfinite(e.lo) and math.isfinite(e.hi) else ""
    return f"{label} {show(e.value)}{ci} {c.limit_models.get(key, '')}" + (f" · {note}" if note else "")


def fmt_r2(x: float | None) -> str:
    """R² to three decimals without the leading zero (.997), so near-1 values stay apart."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.3f}".replace("0.", ".", 1) if 0 <= x < 1 else f"{x:.2f}"


def _line(text: str) -> Text:
    line = Text(text)
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


class HistoryTable(Static):
    """The latest completed rounds, one per row: shown only where the terminal is wide."""

    COLUMNS = (("round", "r"), ("U_s", "U_s"), ("U_v", "U_v"), ("G", "G"), ("test_acc", "test"),
               ("solver_acc", "solver"), ("verifier_acc", "verif"), ("external", "ext"))

    _state: RunState | None = None

    def on_resize(self) -> None:
        if self._state is not None:
            self.show(self._state)

    def show(self, state: RunState) -> None:
        self._state = state
        rows = max(self.content_size.height - 1, 1)
        table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
        for _key, label in self.COLUMNS:
            table.add_column(label, justify="right", no_wrap=True)
        for rec in state.records[-rows:]:
            cells = []
            for key, _label in self.COLUMNS:
                value = rec.get(key)
                if key in ("round", "external"):
                    cells.append("—" if value is None else str(value))
                elif key.endswith("_acc"):
                    cells.append(fmt_pct(value))
                else:
                    cells.append(fmt_num(value))
            table.add_row(*cells)
        self.update(table if state.records else Text("no completed round yet", style="dim"))


class RoundPanel(Static):
    """The round in progress: phase, bar with counts, throughput, ETA; then plan and settings."""

    _state: RunState | None = None

    def on_resize(self) -> None:  # the bar is drawn to the panel's width
        if self._state is not None:
            self.show(self._state)

    def show(self, state: RunState) -> None:
        self._state = state
        width = max(self.content_size.width, 30)
        lines: list[Text] = []
        target = f" of {state.target_rounds}" if state.target_rounds is not None else ""
        prog = state.progress
        if state.round_running and state.round is not None:
            phase = PHASE_LABEL.get(prog.phase, prog.phase) if prog else "starting"
            head = f"round {state.round}{target} · {phase}"
            if state.engine == "pausing":
                head = f"PAUSING after {phase} · round {state.round}{target}"
        elif state.engine == "paused":
            head = f"paused · next round {state.next_round}{target}"
        elif state.engine == "running":
            head = f"starting round {state.next_round}{target}"
        elif state.engine == "finished":
            head = f"done · {state.rounds_done} rounds"
        elif state.engine in ("died", "exited"):
            head = f"engine not running · next round {state.next_round or 0}"
        elif state.engine == "view":
            head = f"read-only · {state.rounds_done} rounds"
        elif state.complete and state.engine in ("idle", "finished", "starting"):
            head = f"run complete · rounds 0–{state.records[-1]['round']} · n/r: extend"
        else:
            head = f"idle · next round {state.next_round if state.next_round is not None else 0}{target}"
        lines.append(Text(head, style="bold"))

        frac = None
        if prog and prog.total:
            frac = prog.done / prog.total
        pct = f" {100 * frac:3.0f}%" if frac is not None else "     "
        lines.append(Text(text_bar(frac, width - len(pct)) + pct))

        if prog:
            unit = PHASE_UNIT.get(prog.phase, "items")
            total = "?" if prog.total is None else str(prog.total)
            rate = prog.rate
            detail = f"{prog.done}/{total} {unit}"
            detail += f" · {rate:.3g}/s" if rate else " · —/s"
            detail += f" · ETA {fmt_duration(prog.eta)}"
        else:
            detail = "—"
        lines.append(Text(detail))

        steps = Text()
        for phase in PHASES:
            if phase in state.phases_done:
                steps.append(f"✓{phase} ")
            elif prog and prog.phase == phase and state.round_running:
                steps.append(f"▸{phase} ", style="bold")
            else:
                steps.append(f"·{phase} ", style="dim")
        lines.append(steps)

        lines.append(Text(f"next: {settings_text(state.settings)}"))
        plan = describe_schedule(state.schedule)
        pool = f" of M={state.n_external}" if state.n_external else ""
        lines.append(Text(f"ext η: {plan}{pool}"))
        if state.records:
            rec = state.records[-1]
            secs = (rec.get("seconds") or {}).get("total")
            lines.append(Text(f"last r{rec['round']}: U_s {fmt_num(rec.get('U_s'))} · U_v "
                              f"{fmt_num(rec.get('U_v'))} · G {fmt_num(rec.get('G'))}"
                              + (f" · {fmt_duration(secs)}" if secs is not None else ""), style="dim"))
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        self.update(Group(*lines))


class EventLog(RichLog):
    """Events, engine stderr and errors, newest at the bottom; errors are marked with '!!'."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=2000, min_width=20, wrap=False, markup=False, highlight=False,
                         **kwargs)

    def add(self, state: RunState, line: LogLine) -> None:
        stamp = state.relative(line.time)
        first, *rest = line.text.splitlines() or [""]
        if line.kind == "stderr":
            self.write(Text(f"{stamp} │ {first}", style="dim"))
            return
        mark = "!!" if line.error else "  "
        self.write(Text(f"{stamp} {mark} {first}", style="bold red" if line.error else ""))
        for extra in rest:
            self.write(Text(f"         {extra}", style="red" if line.error else "dim"))
