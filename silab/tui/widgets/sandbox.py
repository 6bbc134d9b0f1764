"""The theory sandbox (key t): the paper's dynamics with numbers you type, beside the run's data.

Seeded from the coupled fit (λ, α/β, G∞ = b/k, U_s0, U_v0) with γ = 0 and no external data; every
keystroke re-runs `silab.theory.cross.simulate_identified` through tui/fitting.py (the exact Prop. 3.1
step per round, and the verifier's lift U_v / (1 + γη_t) in rounds with external data) and redraws
the prediction.
"""
from __future__ import annotations

import math
import re
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Static

from silab.protocol import SCHEDULES
from silab.tui.fitting import FitSummary, ParamRow, simulate
from silab.tui.state import fmt_num
from silab.tui.widgets.plots import NllChart

FIELDS = (("lam", "λ (rate)"), ("ab", "α/β"), ("ginf", "G∞ = b/k"), ("us0", "U_s0"),
          ("uv0", "U_v0"), ("gamma", "γ (lift)"), ("eta", "η schedule"))


def seed_values(records: list[dict[str, Any]], fit: FitSummary | None) -> dict[str, str]:
    """Start from the coupled fit; without one, from round 0 and middling rates."""
    first = records[0] if records else {}
    us0, uv0 = first.get("U_s", 1.0), first.get("U_v", 0.5)
    values = {"lam": 0.3, "ab": 2.0, "ginf": 0.5 * (us0 - uv0), "us0": us0, "uv0": uv0}
    if fit is not None and fit.ok and fit.predict is not None:
        start = fit.predict([0.0])
        values.update(lam=fit.param("λ"), ab=fit.param("α/β"), ginf=fit.param("G∞"),
                      us0=start["U_s"][0], uv0=start["U_v"][0])
    out = {k: fmt_num(v, 4) for k, v in values.items()}
    out.update(gamma="0", eta="none")
    return out


def parse_schedule(text: str) -> str | list[float]:
    text = text.strip()
    if text in SCHEDULES:
        return text
    try:
        return [float(x) for x in re.split(r"[,\s]+", text) if x]
    except ValueError:
        raise ValueError(f"η: '{text}' is not none/early/uniform/late or shares like 0.5, 0.5") from None


def predict(values: dict[str, str], rounds: int, horizon: int):
    """The trajectory for the typed numbers, or ValueError naming what is wrong."""
    nums = {}
    for key, label in FIELDS[:-1]:
        try:
            nums[key] = float(values[key])
        except ValueError:
            raise ValueError(f"{label}: '{values[key]}' is not a number") from None
    return simulate(nums["lam"], nums["ab"], nums["ginf"], nums["us0"], nums["uv0"], nums["gamma"],
                    parse_schedule(values["eta"]), horizon, schedule_rounds=rounds)


def as_fit(traj, lam: float, n_rounds: int) -> FitSummary:
    """The trajectory in the shape the NLL chart draws (rounds joined by straight lines)."""
    import numpy as np

    def curves(ts):
        return {"U_s": list(np.interp(ts, traj.t, traj.U_s)), "U_v": list(np.interp(ts, traj.t, traj.U_v)),
                "G": list(np.interp(ts, traj.t, traj.G))}
    return FitSummary(params=[ParamRow("λ", lam), ParamRow("U_s∞", traj.U_s_inf),
                              ParamRow("U_v∞", traj.U_v_inf),
                              ParamRow("G∞", traj.U_s_inf - traj.U_v_inf)],
                      predict=curves, n_rounds=n_rounds)


class SandboxScreen(Screen[None]):
    BINDINGS = [Binding("escape", "close", "Back to the run"),
                Binding("ctrl+r", "reset", "Reset to the fit")]

    def __init__(self, records: list[dict[str, Any]], fit: FitSummary | None,
                 target: int | None) -> None:
        super().__init__()
        self.records, self.fit = records, fit
        last = records[-1]["round"] if records else 0
        self.rounds = max(target or 0, last, 1)
        self.seed = seed_values(records, fit)

    def compose(self) -> ComposeResult:
        yield Static(Text("theory sandbox · Sun et al. Prop. 3.1 and the cross-improvement step "
                          "(silab.theory) · letters: the run · lines: the prediction", style="bold"),
                     id="sandbox-title")
        with Horizontal(id="sandbox-body"):
            with Vertical(id="sandbox-fields"):
                for key, label in FIELDS:
                    with Horizontal(classes="field"):
                        yield Label(label, classes="sandbox-label")
                        yield Input(self.seed[key], id=f"sb-{key}", compact=True)
                yield Static("", id="sandbox-out")
            chart = NllChart(id="sandbox-chart")
            chart.fit_label = "theory"
            yield chart
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.recompute()
        self.query_one(f"#sb-{FIELDS[0][0]}", Input).focus()

    def values(self) -> dict[str, str]:
        return {key: self.query_one(f"#sb-{key}", Input).value for key, _ in FIELDS}

    def on_input_changed(self, event: Input.Changed) -> None:
        self.recompute()

    def recompute(self) -> None:
        out = self.query_one("#sandbox-out", Static)
        values = self.values()
        try:
            lam = float(values["lam"])
            horizon = max(self.rounds, min(int(math.ceil(3.0 / lam)), 3 * self.rounds)) \
                if lam > 0 else self.rounds
            traj = predict(values, self.rounds, horizon)
        except (ValueError, OverflowError) as exc:
            out.update(Text(f"✗ {exc}", style="bold"))
            return
        at = min(self.rounds, traj.t.size - 1)
        out.update(Text(f"round {at}: U_s {fmt_num(traj.U_s[at])}  U_v {fmt_num(traj.U_v[at])}\n"
                        f"limits: U_s∞ {fmt_num(traj.U_s_inf)}  U_v∞ {fmt_num(traj.U_v_inf)}\n"
                        f"Ση {fmt_num(float(traj.eta.sum()))} of the external set"))
        self.query_one(NllChart).set_data(self.records, self.rounds,
                                          fit=as_fit(traj, lam, len(self.records)))

    def action_reset(self) -> None:
        for key, _ in FIELDS:
            self.query_one(f"#sb-{key}", Input).value = self.seed[key]

    def action_close(self) -> None:
        self.dismiss(None)
