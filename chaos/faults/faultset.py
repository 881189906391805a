"""FaultSet: the active faults, in insertion order, with their trigger state,
counters and lifetime.

For each request every matching fault makes its own trigger decision
(FaultSet.fire), whatever the others do, so a fault's counters and random draws
do not depend on its neighbours. Expired faults vanish the next time anyone
looks: expiry needs no timer and no call. What the fired faults then do to the
flow, and in which order, is hooks.py.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from chaos.errors import UsageError
from chaos.faults.kind import FaultKind
from chaos.faults.lifetime import Lifetime
from chaos.faults.registry import kinds
from chaos.faults.spec import Counters, FaultSpec
from chaos.faults.triggers import TriggerState
from chaos.vocab.endpoints import Endpoint


class DuplicateFault(UsageError):
    """A fault with this name is already active."""


class UnknownFault(UsageError):
    """No active fault has this name."""


class ActiveFault:
    """One added fault: its spec, its kind instance, trigger state and lifetime."""

    def __init__(self, spec: FaultSpec, clock: Callable[[], float]):
        self.spec = spec
        self.kind: FaultKind = kinds()[spec.kind](spec.params)  # holds any per-fault state a kind keeps
        self.trigger = TriggerState(spec.trigger, clock())
        self.lifetime = Lifetime(spec.expires_at, clock)
        self.applied = 0

    @property
    def counters(self) -> Counters:
        return Counters(self.trigger.matched, self.trigger.fired, self.applied)


class FaultSet:
    """Active faults in insertion order; expired ones vanish the next time anyone looks."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._faults: dict[str, ActiveFault] = {}

    def add(self, spec: FaultSpec) -> None:
        self._prune()
        if spec.name in self._faults:
            raise DuplicateFault(f"fault {spec.name!r} already exists")
        self._faults[spec.name] = ActiveFault(spec, self._clock)

    def replace(self, spec: FaultSpec) -> None:
        """Swap the fault of the same name, keeping its place in the order.

        The new fault starts afresh: counters at zero, its time window from now.
        """
        self._prune()
        old = self._faults.get(spec.name)
        if old is None:
            raise UnknownFault(f"no fault named {spec.name!r}")
        self._faults[spec.name] = ActiveFault(spec, self._clock)
        old.lifetime.end()

    def remove(self, name: str) -> None:
        self._prune()
        removed = self._faults.pop(name, None)
        if removed is None:
            raise UnknownFault(f"no fault named {name!r}")
        removed.lifetime.end()

    def clear(self) -> None:
        for active in self._faults.values():
            active.lifetime.end()
        self._faults.clear()

    def specs(self) -> list[FaultSpec]:
        """Active specs in order, each with a snapshot of its counters."""
        self._prune()
        return [dataclasses.replace(a.spec, counters=a.counters) for a in self._faults.values()]

    def matching(
        self, host: str, method: str, endpoint: Endpoint, client: str | None = None
    ) -> list[ActiveFault]:
        """Faults whose match criteria take this request (no trigger decision, no counting)."""
        self._prune()
        return [
            a for a in self._faults.values() if a.spec.match.matches(host, method, endpoint, client)
        ]

    def fire(
        self,
        host: str,
        method: str,
        endpoint: Endpoint,
        client: str | None = None,
        *,
        connect: bool = False,
    ) -> list[ActiveFault]:
        """The faults that act on this request, in order, after each matching
        fault's trigger decided (and counted). `connect`: the request is a
        CONNECT, which only kinds with on_connect see."""
        if not self._faults:
            return []
        now = self._clock()
        self._prune(now)
        fired = []
        for active in self._faults.values():
            if connect and not active.kind.acts_on_connect:
                continue
            if active.spec.match.matches(host, method, endpoint, client) and active.trigger.decide(now):
                fired.append(active)
        return fired

    def _prune(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        for name in [n for n, a in self._faults.items() if a.spec.expires_at <= now]:
            self._faults.pop(name).lifetime.end()
