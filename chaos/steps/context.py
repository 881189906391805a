"""StepContext: everything a step kind may use while it runs, and nothing more.

The runner implements it (chaos.runner.context) over the real lab, fault
proxy and engines; tests implement it with fakes. A kind never sees the
runner, the lab object or the control client themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chaos.clients.engines import Engine
    from chaos.clients.mirror_probe import MirrorSnapshot
    from chaos.language.model import SeedImage
    from chaos.vocab.reference import ImageReference
    from chaos.vocab.results import PushResult


class FaultControl(Protocol):
    """The fault proxy's faults, as steps switch them."""

    def add(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Switch a fault on; returns it as the proxy stored it."""

    def remove(self, name: str) -> bool:
        """Switch a fault off; False when it was already off (expired or cleared)."""

    def reset(self) -> int:
        """Switch every fault off; returns how many were on."""

    def active(self) -> list[str]:
        """Names of the faults on now, as the proxy says."""


class LabControl(Protocol):
    """The embedded lab, for steps that change it (none against a target)."""

    def restart(self, component: str) -> None: ...

    def publish(self, image: SeedImage, content_seed: str) -> str: ...

    def problems(self) -> dict[str, str]:
        """Components that are not running, each with why."""


class StepContext(Protocol):
    deadline: float
    """time.monotonic() by which the step must be done."""
    cancelled: threading.Event
    """Set on Ctrl-C: waits and repeats stop early."""
    run_engine: str
    """The run's engine, for pull steps that name none."""
    faults: FaultControl
    lab: LabControl | None

    def engine(self, name: str, login: str | None, timeout_s: float, *, mirror_only: bool = False) -> Engine:
        """A puller of engine `name`, logged in as `login` (a scenario user) or
        anonymous; timeout_s is the whole pull's budget; mirror_only: no fallback to Hub."""

    def push(self, engine: str, image: ImageReference, to: str, size_bytes: int, login: str | None, timeout_s: float) -> PushResult:
        """Push a synthetic image with engine `engine` to the mirror, the push registry or the hub."""

    def snapshot(self, *, settle: bool) -> MirrorSnapshot | None:
        """What the mirror holds now (None: there is no mirror to look at)."""

    def snapshot_of(self, step_name: str) -> MirrorSnapshot:
        """The mirror as it was after an earlier step."""

    def events_since(self, step_name: str) -> list[dict[str, Any]]:
        """Every tap event since the named step started ("start": since the run began)."""

    def proxy_restarted(self) -> None:
        """The fault proxy restarted: its tap and faults start again from nothing."""
