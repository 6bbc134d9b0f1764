"""Plots drawn with plotext (6.x figure API) straight into a widget, at the widget's size.

Each series has its own letter (S, V, G, T, …) so the plots read without colour; fitted curves
are thin braille lines that run through their series' letters and on to the forecast. Reference
runs (silab view A B …, key a) are drawn with the digit of their place in the legend.
"""
from __future__ import annotations

import math
import threading
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.widget import Widget

from silab.tui.fitting import FitSummary
from silab.tui.state import fmt_num, fmt_pct

# plotext draws on one global figure; builds happen on the UI thread, the lock is a seatbelt.
_PLOTEXT_LOCK = threading.Lock()

# (record key, letter, 256-colour index, legend label)
NLL_SERIES = [("U_s", "S", 12, "U_s"), ("U_v", "V", 10, "U_v"), ("G", "G", 9, "G")]
ACC_SERIES = [("test_acc", "T", 12, "test"), ("solver_acc", "S", 10, "solver"),
              ("verifier_acc", "V", 9, "verif"), ("pass_at_k", "P", 13, "pass@k")]
REF_COLOURS = (208, 141, 44, 178, 167, 79)   # reference runs, beside the main run's colours


def _x_ticks(lo: int, hi: int, width: int) -> list[int]:
    """Integer round ticks, 1-2-5 spaced so labels never crowd."""
    room = max(width // 6, 2)
    step, mult = 1, 1
    while (hi - lo) / step > room:
        for m in (1, 2, 5):
            step = m * mult
            if (hi - lo) / step <= room:
                break
        mult *= 10
    return list(range(lo, hi + 1, step))


def _finite(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


class PlotextChart(Widget):
    """Base: keeps data, rebuilds the plotext figure only when data or size change."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.records: list[dict[str, Any]] = []
        self.target_rounds: int | None = None
        self._version = 0
        self._cache: tuple[Any, Any] | None = None
        self.refs: list[tuple[str, list[dict[str, Any]]]] = []   # reference runs: (label, records)

    def set_data(self, records: list[dict[str, Any]], target_rounds: int | None, **extra: Any) -> None:
        self.records = list(records)
        self.target_rounds = target_rounds
        for key, value in extra.items():
            setattr(self, key, value)
        self._version += 1
        self.refresh()

    # subclasses ------------------------------------------------------------------------------
    def legend(self) -> Text:
        return Text("")

    def draw(self, fig: Any, plt: Any, width: int) -> bool:
        """Add signals to fig; False when there is nothing to draw yet."""
        return False

    def empty_message(self) -> str:
        return "no completed round yet"

    # rendering -------------------------------------------------------------------------------
    def render(self) -> Any:
        width, height = self.content_size.width, self.content_size.height
        key = (width, height, self._version)
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        legends = [self.legend()] + ([ref_legend(self.refs)] if self.refs else [])
        for legend in legends:
            legend.no_wrap, legend.overflow = True, "ellipsis"
        body: Text
        if width < 16 or height < 4 + len(legends):
            body = Text("(too small to plot)")
        else:
            body = self._build(width, height - len(legends))
        out = Group(*legends, body)
        self._cache = (key, out)
        return out

    def _build(self, width: int, height: int) -> Text:
        import plotext as plt

        with _PLOTEXT_LOCK:
            plt.terminal.limit(False, False)  # size to the widget, not to the real terminal
            fig = plt.figure
            fig.clear()
            fig.theme("simple")
            fig.plot_size(width, height)
            try:
                drew = self.draw(fig, plt, width)
                text = str(fig.build()) if drew else ""
            except Exception as exc:  # plotext edge cases (flat data etc.) must not kill the UI
                text, drew = f"(plot failed: {type(exc).__name__})", True
            finally:
                fig.clear()
        if not drew:
            return Text(self.empty_message(), style="dim")
        body = Text.from_ansi(text.rstrip("\n"), no_wrap=True)
        body.overflow = "crop"
        return body


def ref_legend(refs: list[tuple[str, list[dict[str, Any]]]]) -> Text:
    """'refs 1 early-s0 2 late-s0': reference run k is drawn with the digit k."""
    text = Text("refs ", style="bold")
    for k, (label, _records) in enumerate(refs, start=1):
        text.append(str(k % 10), style=f"bold color({REF_COLOURS[(k - 1) % len(REF_COLOURS)]})")
        text.append(f" {label} ")
    return text


def draw_refs(fig: Any, plt: Any, refs, series: list[tuple[str, str]]) -> None:
    """Reference runs: a thin line per series through digit markers (ref k: the digit k)."""
    for k, (_label, records) in enumerate(refs, start=1):
        colour = REF_COLOURS[(k - 1) % len(REF_COLOURS)]
        for key, side in series:
            pts = [(r["round"], value_of(r, key)) for r in records]
            pts = [(x, y) for x, y in pts if y is not None]
            if not pts:
                continue
            xs, ys = (list(v) for v in zip(*pts))
            if len(pts) > 1:
                fig.draw(fig.signal(xs, ys, marker=plt.marker("braille", pixel=colour),
                                    yside=side).lines())
            fig.draw(fig.signal(xs, ys, marker=plt.marker(str(k % 10), pixel=colour), yside=side))


def value_of(record: dict[str, Any], key: str) -> float | None:
    v = record.get(key)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def last_round(*record_lists: list[dict[str, Any]]) -> int:
    return max((r[-1]["round"] for r in record_lists if r), default=0)


class NllChart(PlotextChart):
    """U_s, U_v (left axis) and G (right axis) per round, with the fitted curves and forecast."""

    fit: FitSummary | None = None
    fit_label = "fit"

    def legend(self) -> Text:
        text = Text("NLL ", style="bold")
        fit = self.fit if self.fit and self.fit.ok else None
        for key, letter, colour, label in NLL_SERIES:
            limit = fit.param(f"{key}∞") if fit else None
            text.append(letter, style=f"bold color({colour})")
            text.append((f" {label}" if key != "G" else "")
                        + (f"→{fmt_num(limit)}" if limit is not None else "") + " ")
        if fit and fit.predict:
            text.append(f"⠒{self.fit_label} ", style="dim")
        if self.records and self.content_size.width >= 60:
            text.append("(G: right axis)", style="dim")
        last = self.records[-1] if self.records else {}
        if last.get("clock") == "epoch":   # the inner clock: x counts checkpoints of `spacing` epochs
            text.append(f" x: round = {last.get('spacing', 1):g} epoch", style="dim")
        return text

    def horizon(self) -> int:
        last = last_round(self.records, *(r for _l, r in self.refs))
        hi = max(self.target_rounds or 0, last + 1, 3)
        lam = self.fit.param("λ") if self.fit else None
        if lam and lam > 0:  # forecast until ~95 % of the way to the limit, within reason
            hi = max(hi, min(int(math.ceil(3.0 / lam)), 3 * hi))
        return hi

    def draw(self, fig: Any, plt: Any, width: int) -> bool:
        rounds = [r["round"] for r in self.records]
        if not rounds:
            return False
        hi = self.horizon()
        fig.ruler("x").lim(0, hi)
        fig.ruler("x").ticks(_x_ticks(0, hi, width))
        if self.fit and self.fit.predict:
            steps = max(2 * width, 40)
            ts = [hi * i / steps for i in range(steps + 1)]
            try:
                curves = self.fit.predict(ts)
            except Exception:
                curves = {}
            for key, _letter, colour, _label in NLL_SERIES:
                ys = curves.get(key)
                if ys and len(ys) == len(ts) and _finite(ys):
                    fig.draw(fig.signal(ts, ys, marker=plt.marker("braille", pixel=colour),
                                        yside="right" if key == "G" else "left").lines())
        draw_refs(fig, plt, self.refs, [("U_s", "left"), ("U_v", "left"), ("G", "right")])
        for key, letter, colour, _label in NLL_SERIES:  # the run itself on top
            pts = [(r["round"], r.get(key)) for r in self.records]
            pts = [(x, y) for x, y in pts if isinstance(y, (int, float)) and math.isfinite(y)]
            if pts:
                xs, ys = zip(*pts)
                fig.draw(fig.signal(list(xs), list(ys), marker=plt.marker(letter, pixel=colour),
                                    yside="right" if key == "G" else "left"))
        return True


class AccuracyChart(PlotextChart):
    """Test, solver and verifier accuracy per round (and pass@k once recorded), 0–100 %."""

    def _pass_k(self) -> str | None:
        ks: set[str] = set()
        for r in self.records:
            if isinstance(r.get("pass_at_k"), dict):
                ks.update(r["pass_at_k"])
        return max(ks, key=lambda k: int(k) if str(k).isdigit() else 0) if ks else None

    def _values(self, key: str) -> list[tuple[int, float]]:
        k = self._pass_k()
        out = []
        for r in self.records:
            v = r.get(key) if key != "pass_at_k" else (r.get("pass_at_k") or {}).get(k)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.append((r["round"], float(v)))
        return out

    def legend(self) -> Text:
        text = Text("acc% ", style="bold")
        k = self._pass_k()
        last = self.records[-1] if self.records else {}
        for key, letter, colour, label in ACC_SERIES:
            if key == "pass_at_k":
                if k is None:
                    continue
                label, value = f"pass@{k}", (last.get("pass_at_k") or {}).get(k)
            else:
                value = last.get(key)
            text.append(letter, style=f"bold color({colour})")
            text.append(f" {label} {fmt_pct(value).rstrip('%')} ")
        return text

    def draw(self, fig: Any, plt: Any, width: int) -> bool:
        if not self.records:
            return False
        last = last_round(self.records, *(r for _l, r in self.refs))
        hi = max(self.target_rounds or 0, last + 1, 3)
        fig.ruler("x").lim(0, hi)
        fig.ruler("x").ticks(_x_ticks(0, hi, width))
        fig.ruler("y").lim(0, 1)
        fig.ruler("y").ticks([0, 0.5, 1], ["0%", "50%", "100%"])
        draw_refs(fig, plt, self.refs, [("test_acc", "left")])
        for key, letter, colour, _label in ACC_SERIES:
            pts = self._values(key)
            if not pts:
                continue
            xs, ys = (list(v) for v in zip(*pts))
            if len(pts) > 1:
                fig.draw(fig.signal(xs, ys, marker=plt.marker("braille", pixel=colour)).lines())
            fig.draw(fig.signal(xs, ys, marker=plt.marker(letter, pixel=colour)))
        return True
