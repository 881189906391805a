"""RunContext: the runner's StepContext (chaos.steps.context) for one step."""

from __future__ import annotations

import threading
from typing import Any

from chaos.clients.engines import Engine
from chaos.clients.mirror_probe import MirrorSnapshot
from chaos.errors import UsageError
from chaos.runner.environment import RunEnvironment
from chaos.runner.faultbook import FaultBook
from chaos.runner.tap_reader import TapReader
from chaos.steps.context import LabControl
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import PushResult


class RunContext:
    def __init__(
        self,
        env: RunEnvironment,
        *,
        deadline: float,
        cancelled: threading.Event,
        run_engine: str,
        faults: FaultBook,
        tap: TapReader,
        snapshots: dict[str, MirrorSnapshot],
    ):
        self._env = env
        self.deadline = deadline
        self.cancelled = cancelled
        self.run_engine = run_engine
        self.faults = faults
        self._tap = tap
        self._snapshots = snapshots

    @property
    def lab(self) -> LabControl | None:
        return self._env.lab

    def _credentials(self, login: str | None) -> tuple[str, str] | None:
        if login is None:
            return None
        try:
            return login, self._env.state.users[login]
        except KeyError:
            raise UsageError(f"login {login!r}: no such user in this lab") from None

    def engine(self, name: str, login: str | None, timeout_s: float, *, mirror_only: bool = False) -> Engine:
        return self._env.engines(name, self._credentials(login), timeout_s, mirror_only)

    def push(self, engine: str, image: ImageReference, to: str, size_bytes: int, login: str | None, timeout_s: float) -> PushResult:
        return self._env.pusher(engine, image, to, size_bytes, self._credentials(login), timeout_s)

    def snapshot(self, *, settle: bool) -> MirrorSnapshot | None:
        return self._env.probe.snapshot(settle=settle)

    def snapshot_of(self, step_name: str) -> MirrorSnapshot:
        return self._snapshots[step_name]

    def events_since(self, step_name: str) -> list[dict[str, Any]]:
        return self._tap.events_since(step_name)

    def proxy_restarted(self) -> None:
        self._tap.proxy_restarted()
        self.faults.closed_all(self.faults.step)


