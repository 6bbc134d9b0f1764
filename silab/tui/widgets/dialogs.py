"""Modal dialogs: next-round settings, the external-data plan, quitting mid-round, extending a
finished run and adding reference runs.

Input is validated with the profile's own rules (silab.config), the same ones `--set` uses,
before any command reaches the engine; the engine validates again and records what it accepts.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from silab.config import Profile, apply_overrides, profile_from_dict, schedule_shares
from silab.errors import UsageError
from silab.protocol import INJECT_PRESETS, SCHEDULES, SETTINGS
from silab.tui.state import describe_schedule

# The settings dialog's fields: names in protocol.SETTINGS (rounds has its own dialog, ExtendDialog).
STEERED = {"sigma": "verifier threshold", "n_samples": "samples per prompt", "lr": "learning rate"}


def field_label(name: str) -> str:
    s = SETTINGS[name]
    span = f", {s.lo:g}–{s.hi:g}" if name == "sigma" else ""
    return f"{s.label} ({STEERED[name]}{span})"


# ---------------------------------------------------------------------------------------------
# validation (pure functions, tested without a screen)

def _base_profile(profile: dict[str, Any] | None) -> Profile:
    try:
        return profile_from_dict(dict(profile or {}), "profile")
    except UsageError:  # an odd profile.toml must not block steering: fall back to the ranges
        return Profile()


def _clean(err: UsageError) -> str:
    return re.sub(r"^--set[^:]*:\s*", "", str(err))


def check_settings(profile: dict[str, Any] | None, values: dict[str, str],
                   current: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Text fields -> the settings that change, or an error; empty fields keep their value."""
    overrides = [f"{SETTINGS[name].key}={values[name].strip()}" for name in STEERED
                 if values.get(name, "").strip()]
    try:
        checked = apply_overrides(_base_profile(profile), overrides)
    except UsageError as err:
        return {}, _clean(err)
    data = checked.to_dict()
    new = {name: SETTINGS[name].read(data) for name in STEERED}
    return {k: v for k, v in new.items()
            if values.get(k, "").strip() and current.get(k) != v}, None


def parse_rounds(text: str) -> list[int]:
    """'3', '3-5', '2,4,7', '2-3, 6' -> sorted round numbers; ValueError on anything else."""
    rounds: set[int] = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"'{part}' is not a round or a range like 3-5")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise ValueError(f"range '{part}' runs backwards")
        rounds.update(range(a, b + 1))
    if not rounds:
        raise ValueError("give the round(s), e.g. 3 or 3-5")
    return sorted(rounds)


def build_plan(profile: dict[str, Any] | None, existing: Any, rounds_text: str, eta_text: str,
               first_open: int, target: int | None) -> tuple[Any, str | None]:
    """The schedule to send (preset name or η per round 1..T), or an error.

    A custom plan edits the current list: the chosen rounds get η each, others keep theirs.
    Rounds that have already trained cannot be changed.
    """
    word = rounds_text.strip().lower()
    if word in SCHEDULES:
        schedule: Any = word
    else:
        try:
            rounds = parse_rounds(rounds_text)
        except ValueError as err:
            return None, str(err)
        try:
            eta = float(eta_text)
        except ValueError:
            return None, "η must be a number, e.g. 0.1 (a share of the external set)"
        if not 0.0 <= eta <= 1.0:
            return None, "η must be between 0 and 1"
        first_open = max(first_open, 1)
        past = [r for r in rounds if r < first_open]
        if past:
            return None, f"round {past[0]} has already trained; the first open round is {first_open}"
        if target is not None and rounds[-1] > target:
            return None, f"round {rounds[-1]} is past the run's last round ({target})"
        shares = [float(x) for x in existing] if isinstance(existing, list) else []
        shares += [0.0] * (rounds[-1] - len(shares))
        for r in rounds:
            shares[r - 1] = eta
        while shares and shares[-1] == 0.0:
            shares.pop()
        schedule = shares if shares else "none"
    value = schedule if isinstance(schedule, str) else "[" + ", ".join(repr(x) for x in schedule) + "]"
    text = f'external.schedule="{value}"' if isinstance(schedule, str) else f"external.schedule={value}"
    try:
        apply_overrides(_base_profile(profile), [text])
    except UsageError as err:
        return None, _clean(err)
    return schedule, None


def preset_preview(name: str, target: int | None) -> str:
    """The shares a preset gives, computed as the engine does (silab.config.schedule_shares)."""
    if not target:   # no target yet: the engine's plan_changed will tell
        return f"{name} preset (the engine's shares appear on the main screen)"
    return f"{name} → " + describe_schedule(schedule_shares(name, target))


# ---------------------------------------------------------------------------------------------
# screens

class _Dialog(ModalScreen[Any]):
    """Shared keys: Esc cancels; Enter in any field applies."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply":
            self.apply()
        elif event.button.id == "cancel":
            self.dismiss(None)

    def apply(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def show_error(self, message: str | None) -> None:
        self.query_one("#error", Label).update(f"✗ {message}" if message else "")


class SettingsDialog(_Dialog):
    """σ, N and the learning rate for the next round; the result is {key: new value}.

    Built once and reused (the app installs it): composing a dialog is the slowest thing a key
    can trigger, and a key must show on screen within 100 ms.
    """

    def __init__(self) -> None:
        super().__init__()
        self.profile: dict[str, Any] | None = None
        self.current: dict[str, Any] = {}

    def prepare(self, profile: dict[str, Any] | None, current: dict[str, Any]) -> "SettingsDialog":
        self.profile, self.current = profile, dict(current)
        return self

    def on_screen_resume(self) -> None:
        for name in STEERED:
            value = self.current.get(name)
            self.query_one(f"#set-{name}", Input).value = "" if value is None else str(value)
        self.show_error(None)
        first = self.query_one(f"#set-{next(iter(STEERED))}", Input)
        first.focus()
        first.select_all()  # typing replaces the current value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Settings for the next round", classes="dialog-title")
            for name in STEERED:
                with Horizontal(classes="field"):
                    yield Label(field_label(name), classes="field-label")
                    yield Input("", id=f"set-{name}", compact=True)
            yield Label("", id="error", classes="error")
            yield Label("enter apply · esc cancel · tab next field", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Apply", id="apply", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
        yield Footer(show_command_palette=False)

    def apply(self) -> None:
        values = {name: self.query_one(f"#set-{name}", Input).value for name in STEERED}
        changes, error = check_settings(self.profile, values, self.current)
        if error:
            self.show_error(error)
            return
        self.dismiss(changes or None)


class InjectDialog(_Dialog):
    """Plan external data: a preset, or round(s) and a share η; the result is the schedule."""

    def __init__(self) -> None:
        super().__init__()
        self.profile: dict[str, Any] | None = None
        self.existing: Any = None
        self.first_open, self.target, self.n_external = 1, None, 0

    def prepare(self, profile: dict[str, Any] | None, existing: Any, first_open: int,
                target: int | None, n_external: int) -> "InjectDialog":
        self.profile, self.existing = profile, existing
        self.first_open, self.target, self.n_external = first_open, target, n_external
        return self

    def on_screen_resume(self) -> None:
        pool = (f"external set M = {self.n_external} examples" if self.n_external
                else "external set is empty (task.n_external = 0)")
        self.query_one("#pool", Label).update(f"{pool}; now: {describe_schedule(self.existing)}")
        rounds = self.query_one("#rounds", Input)
        rounds.placeholder = f"{max(self.first_open, 1)}-… or early/uniform/late"
        rounds.value = ""
        self.query_one("#eta", Input).value = ""
        self.query_one("#preview", Static).update("plan: —")
        self.show_error(None)
        rounds.focus()

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Inject external data", classes="dialog-title")
            yield Label("", id="pool", classes="hint")
            with Horizontal(classes="field"):
                yield Label("rounds or preset", classes="field-label")
                yield Input("", id="rounds", compact=True)
            with Horizontal(classes="field"):
                yield Label("η per round", classes="field-label")
                yield Input("", placeholder="share of M, e.g. 0.1", id="eta", compact=True)
            with Horizontal(classes="buttons"):
                for preset in INJECT_PRESETS:
                    yield Button(preset, id=f"preset-{preset}", compact=True)
            yield Static("plan: —", id="preview", classes="preview")
            yield Label("", id="error", classes="error")
            yield Label("enter apply · esc cancel · tab next field", classes="hint")
        yield Footer(show_command_palette=False)

    def _plan(self) -> tuple[Any, str | None]:
        return build_plan(self.profile, self.existing, self.query_one("#rounds", Input).value,
                          self.query_one("#eta", Input).value or "0", self.first_open, self.target)

    def on_input_changed(self, event: Input.Changed) -> None:
        rounds = self.query_one("#rounds", Input).value.strip()
        if not rounds:
            self.query_one("#preview", Static).update("plan: —")
            self.show_error(None)
            return
        schedule, error = self._plan()
        if error:
            self.query_one("#preview", Static).update("plan: —")
        elif isinstance(schedule, str) and schedule in INJECT_PRESETS:
            self.query_one("#preview", Static).update(f"plan: {preset_preview(schedule, self.target)}")
        else:
            self.query_one("#preview", Static).update("plan: " + describe_schedule(schedule))
        self.show_error(error)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id.startswith("preset-"):
            event.stop()
            self.query_one("#rounds", Input).value = event.button.id.removeprefix("preset-")
            self.query_one("#rounds", Input).focus()
            return
        super().on_button_pressed(event)

    def apply(self) -> None:
        if not self.query_one("#rounds", Input).value.strip():
            self.show_error("give round(s) and η, or a preset")
            return
        schedule, error = self._plan()
        if error:
            self.show_error(error)
            return
        self.dismiss(schedule)


class QuitDialog(_Dialog):
    """Asked when quitting mid-round: stop the engine (after its phase) or keep going."""

    def on_screen_resume(self) -> None:
        self.query_one("#cancel", Button).focus()

    BINDINGS = [Binding("escape,n", "cancel", "Cancel"), Binding("y", "stop", "Stop & quit")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("A round is running. Stop the engine and quit?", classes="dialog-title")
            yield Label("Completed rounds are saved; the round in progress restarts on resume.",
                        classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("y  stop & quit", id="apply", compact=True)
                yield Button("n  keep running", id="cancel", compact=True)
        yield Footer(show_command_palette=False)

    def action_stop(self) -> None:
        self.dismiss(True)

    def apply(self) -> None:
        self.dismiss(True)


def parse_more_rounds(text: str) -> tuple[int | None, str | None]:
    """'5' -> 5 more rounds; an error for anything but a whole number from 1 to 1000."""
    text = text.strip()
    if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= 1000:
        return None, f"'{text}' is not a number of rounds from 1 to 1000"
    return int(text), None


class ExtendDialog(_Dialog):
    """The profile's rounds are done: how many more? The result is that number."""

    def __init__(self) -> None:
        super().__init__()
        self.last, self.then = 0, "step"

    def prepare(self, last: int, then: str) -> "ExtendDialog":
        self.last, self.then = last, then
        return self

    def on_screen_resume(self) -> None:
        what = "then run one round" if self.then == "step" else "then run them all"
        self.query_one("#extend-what", Label).update(
            f"Rounds 0–{self.last} are done. Extend the run by how many rounds? ({what})")
        field = self.query_one("#more", Input)
        field.value = "5"
        field.focus()
        field.select_all()
        self.show_error(None)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("The run is complete", classes="dialog-title")
            yield Label("", id="extend-what", classes="hint")
            with Horizontal(classes="field"):
                yield Label("more rounds", classes="field-label")
                yield Input("5", id="more", compact=True)
            yield Label("", id="error", classes="error")
            yield Label("enter extend · esc cancel", classes="hint")
        yield Footer(show_command_palette=False)

    def apply(self) -> None:
        more, error = parse_more_rounds(self.query_one("#more", Input).value)
        if error:
            self.show_error(error)
            return
        self.dismiss(more)


class AddRunDialog(_Dialog):
    """A run folder (or a sweep's folder: all its arms) to draw beside this run."""

    def on_screen_resume(self) -> None:
        field = self.query_one("#ref-path", Input)
        field.value = ""
        field.focus()
        self.show_error(None)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Add reference runs", classes="dialog-title")
            yield Label("A run folder, or a folder of runs (a sweep's: all its arms). Their "
                        "curves are drawn with digits 1, 2, … beside this run.", classes="hint")
            with Horizontal(classes="field"):
                yield Label("folder", classes="field-label")
                yield Input("", placeholder="logs/tiny-…", id="ref-path", compact=True)
            yield Label("", id="error", classes="error")
            yield Label("enter add · esc cancel", classes="hint")
        yield Footer(show_command_palette=False)

    def apply(self) -> None:
        from silab.runs import expand_runs

        text = self.query_one("#ref-path", Input).value.strip()
        if not text:
            self.show_error("give a run folder")
            return
        try:
            paths = expand_runs([Path(text).expanduser()])
        except UsageError as err:
            self.show_error(str(err))
            return
        self.dismiss(paths)
