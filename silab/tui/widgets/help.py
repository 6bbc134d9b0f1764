"""The help screen (? or F1): the keys, what each panel and symbol means, where the files are."""
from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

KEYS = [
    ("n", "run one round, then wait (after the last round: extend the run by K rounds)"),
    ("r", "run rounds up to the profile's last (after it: extend by K rounds and run them)"),
    ("p", "pause after the current phase (the round restarts from its start)"),
    ("s", "σ (verifier threshold), N (samples per prompt), learning rate for the next round"),
    ("i", "inject external data: rounds and share η, or early / uniform / late"),
    ("e", "restart a dead engine from the last completed round"),
    ("f", "fit panel: which model describes the run ↔ the paper's coupled fit"),
    ("a", "add reference runs: a run, or a sweep's folder (all its arms), drawn beside this run"),
    ("t", "theory sandbox: edit λ, α/β, G∞, U_s0, U_v0, γ, η and see the prediction"),
    ("w", "write a screenshot (SVG) of the lab into the run folder"),
    ("ctrl+p", "command palette: every action by name"),
    ("? / F1", "this help"),
    ("q", "quit (asks first while a round runs; completed rounds are never lost)"),
]

SYMBOLS = [
    ("U_s", "solver uncertainty: summed NLL of the model's own Best-of-N picks (nats)"),
    ("U_v", "verifier uncertainty: NLL the model assigns to its judge's verdicts on them"),
    ("G", "solver-verifier gap G = U_s − U_v: what self-improvement feeds on"),
    ("λ", "the rate all three decay at under the coupled model: U(t) = U∞ + (U0 − U∞) e^{−λt}"),
    ("U_s∞ U_v∞", "the limits the fit forecasts; with their 95 % intervals"),
    ("G∞", "the gap's limit, b/k in the paper: the capability self-improvement cannot close"),
    ("α/β", "how much more the solver moves than the verifier (the paper assumes α > β > 0)"),
    ("η", "share of the external set M mixed into a round's training (cross-improvement)"),
    ("γ", "how strongly external data moves U_s, per unit η (Sec. 5)"),
    ("acc∞", "the test accuracy's limit, from the best-forecasting model"),
]

PANELS = [
    ("NLL plot", "letters S V G are U_s, U_v, G per round (G on the right axis); braille lines are "
                 "the coupled fit, drawn on to the limit; reference runs are the digits 1, 2, … of the "
                 "'refs' line"),
    ("acc% plot", "T test (sampled), S solver, V verifier (picks right), P pass@k; digits: the "
                  "reference runs' test accuracy"),
    ("fit panel", "coupled, exp (a rate each), power, exp2 (two rates): R² per series and the "
                  "one-round-ahead forecast error (rolling origin; last round while there are "
                  "fewer than 7). ★ forecasts best, ~ its fit flags a problem (a rate at the edge "
                  "of its range). 'one λ' is the F test of one shared rate (each series weighted "
                  "by its own noise): rejected means U_s and U_v want separate rates. The limits "
                  "below come from ★"),
    ("round panel", "the phase in progress, its bar, throughput and ETA; next-round settings; "
                    "the external-data plan"),
    ("log", "events, engine output (│), errors (!!)"),
]


def help_text(run_dir: Path | None) -> Group:
    """Sections of two columns; long explanations wrap inside their column."""
    where = str(run_dir) if run_dir else "RUN"
    files = [
        ("run folder", where),
        ("rounds.jsonl", "one line per completed round (what the plots and fits read)"),
        ("events.jsonl", "every event, as the log shows them"),
        ("rounds/NNN/", "that round's samples, scores, picks, test answers and adapter"),
        ("profile.toml", "the resolved profile (rewritten when settings change)"),
        ("screenshot-*.svg", "what w saved"),
        ("commands", "silab fit RUN · silab plot RUN -o fig.png · silab export RUN --csv"),
    ]
    parts: list = []
    for title, rows in (("Keys", KEYS), ("Symbols", SYMBOLS), ("Panels", PANELS),
                        ("Files", files)):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(ratio=1)
        for key, what in rows:
            grid.add_row(key, what)
        parts += [Text(title, style="bold underline"), grid, Text("")]
    parts.append(Text("Sun et al., arXiv 2507.00075 · esc, ? or q closes this screen", style="dim"))
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,f1,q", "close", "Close")]

    def __init__(self, run_dir: Path | None = None) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static(help_text(self.run_dir))
        yield Footer(show_command_palette=False)

    def action_close(self) -> None:
        self.dismiss(None)
