"""RunEnvironment: what a run acts on, from outside the runner.

The lab's (or a target's) addresses and users, the fault proxy's control
API, the embedded lab itself (for restart and publish), how to make an
engine, how to look at the mirror and how to push. `RunEnvironment.real`
wires the real ones; tests hand the runner exact fakes instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chaos.clients.engines import Engine, make_engine
from chaos.clients.mirror_probe import MirrorProbe, MirrorSnapshot
from chaos.clients.pushing import push_with
from chaos.lab.layout import LabState
from chaos.proxy.control_client import ControlClient
from chaos.proxy.tap import Page
from chaos.steps.context import LabControl
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import PushResult


class Control(Protocol):
    """The fault proxy's control API, as the runner uses it (chaos.proxy.control_client)."""

    def add(self, spec: dict[str, Any]) -> dict[str, Any]: ...
    def remove(self, name: str) -> None: ...
    def reset(self) -> int: ...
    def list(self) -> list[dict[str, Any]]: ...
    def events(self, after: int = 0, limit: int = 1000) -> Page: ...
    def health(self) -> dict[str, Any]: ...
    def in_flight_requests(self) -> list[dict[str, Any]]: ...


class Probe(Protocol):
    def snapshot(self, *, settle: bool = False) -> MirrorSnapshot | None: ...
    def live_uploads(self) -> int: ...


EngineFactory = Callable[[str, "tuple[str, str] | None", float, bool], Engine]
"""(engine name, credentials, timeout, mirror_only) -> an engine."""
Pusher = Callable[[str, ImageReference, str, int, "tuple[str, str] | None", float], PushResult]
"""(engine name, image, to, size_bytes, credentials, timeout) -> a push's result."""


@dataclass
class RunEnvironment:
    state: LabState
    control: Control
    engines: EngineFactory
    probe: Probe
    pusher: Pusher
    lab: LabControl | None = None

    @classmethod
    def real(cls, state: LabState, lab: LabControl | None = None) -> RunEnvironment:
        def engines(name: str, credentials: tuple[str, str] | None, timeout: float, mirror_only: bool) -> Engine:
            return make_engine(name, lab=state, credentials=credentials, timeout=timeout, mirror_only=mirror_only)

        def pusher(engine: str, image: ImageReference, to: str, size_bytes: int, credentials: tuple[str, str] | None,
                   timeout: float) -> PushResult:
            return push_with(engine, state, image, to=to, size_bytes=size_bytes, credentials=credentials, timeout=timeout)

        return cls(
            state=state,
            control=ControlClient(state.control_url, timeout=5.0),
            engines=engines,
            probe=MirrorProbe(state.mirror_url, state.mirror_storage or None),
            pusher=pusher,
            lab=lab,
        )
