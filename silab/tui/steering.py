"""The lab's steering actions, mixed into SilabApp: step, run, pause, settings, inject, extend a
finished run, restart the engine; each sends one protocol command (silab.protocol) on the engine's
stdin, and which of them a key can trigger now (check_action)."""
from __future__ import annotations

from typing import Any

from silab import protocol as P
from silab.tui.widgets import (AddRunDialog, ExtendDialog, InjectDialog, QuitDialog,
                               SettingsDialog)


class SteeringActions:
    """Needs from the app: client, state, view_only, profile_data, _stopping, log_line(),
    refresh_panels(), start_engine(), push_screen(), install_screen()."""

    ENGINE_ACTIONS = ("step", "run", "pause", "settings", "inject", "restart")

    async def send(self, command: dict[str, Any], note: str) -> bool:
        if self.client is None or not await self.client.send(command):
            self.log_line(f"cannot send {command['cmd']}: the engine is not running", error=True)
            return False
        self.log_line(f"▶ {note}", kind="command")
        return True

    def dialog(self, name: str) -> Any:
        """The installed dialog `name`, built on first use and reused after (fast to reopen)."""
        if not self.is_screen_installed(name):
            self.install_screen({"settings": SettingsDialog, "inject": InjectDialog,
                                 "quit": QuitDialog, "extend": ExtendDialog,
                                 "add_run": AddRunDialog}[name](), name)
        return self.get_screen(name)

    # ------------------------------------------------------------------ bindings
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in self.ENGINE_ACTIONS:
            return True
        if self.view_only:
            return False  # no engine: these keys do not exist in a read-only view
        alive = self.client is not None and self.client.alive and not self._stopping
        engine = self.state.engine
        if action == "restart":
            return True if not alive and not self._stopping else None
        if not alive:
            return None
        if action in ("step", "run"):
            return True if engine in ("starting", "idle", "paused", "finished") else None
        if action == "pause":
            return True if engine == "running" else None
        return True  # settings, inject: any time; they apply from the next round

    async def action_step(self) -> None:
        if self.state.complete:
            self.extend_then("step")
            return
        if await self.send({"cmd": P.STEP}, f"step: run round {self.state.next_round or 0}, then wait"):
            self.state.engine = "running"
            self.refresh_panels()

    async def action_run(self) -> None:
        if self.state.complete:
            self.extend_then("run")
            return
        target = self.state.target_rounds
        if await self.send({"cmd": P.RUN}, f"run rounds up to {target}"):
            self.state.engine = "running"
            self.refresh_panels()

    def extend_then(self, then: str) -> None:
        """The profile's rounds are done: ask how many more, raise the target, then step/run."""
        last = self.state.records[-1]["round"]

        async def done(more: int | None) -> None:
            if not more:
                return
            target = last + more
            if await self.send({"cmd": P.SET, "rounds": target}, f"extend the run to round {target}"):
                self.state.target_rounds = target
                await (self.action_step() if then == "step" else self.action_run())
        self.push_screen(self.dialog("extend").prepare(last, then), done)

    async def action_pause(self) -> None:
        if await self.send({"cmd": P.PAUSE}, "pause after the current phase"):
            self.state.engine = "pausing"
            self.refresh_panels()

    def action_settings(self) -> None:
        async def done(changes: dict[str, Any] | None) -> None:
            if changes:
                text = "  ".join(f"{k}={v}" for k, v in changes.items())
                await self.send({"cmd": P.SET, **changes}, f"set for the next round: {text}")
        self.push_screen(self.dialog("settings").prepare(self.profile_data, self.state.settings), done)

    def action_inject(self) -> None:
        st = self.state
        first_open = (st.round + 1 if st.round_running and st.round is not None
                      else st.next_round if st.next_round is not None else 1)

        async def done(schedule: Any) -> None:
            if schedule is not None:
                await self.send({"cmd": P.INJECT, "schedule": schedule}, f"inject external data: {schedule}")
        self.push_screen(self.dialog("inject").prepare(self.profile_data, st.schedule, first_open,
                                                       st.target_rounds, st.n_external), done)

    async def action_restart(self) -> None:
        if self.client is not None and self.client.alive:
            return
        self.log_line(f"restarting the engine from round {self.state.next_round or 0}")
        await self.start_engine(first=False)
