"""FaultSet: the active faults, in insertion order, with their trigger state,
counters and lifetime.

For each request every matching fault makes its own trigger decision
(FaultSet.fire), whatever the others do, so a fault's counters and random draws
do not depend on its neighbours. Expired faults vanish the next time anyone
looks: expiry needs no timer and no call (a watcher that wants to hear of an
expiry when it happens calls prune() at next_expiry()). What the fired faults
then do to the flow, and in which order, is hooks.py.

A listener, when given, hears every change as (change, spec) with change one of
CHANGES, so the proxy can log when a fault went on or off and why.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from chaos.errors import UsageError, quoted
from chaos.faults.kind import FaultKind
from chaos.faults.lifetime import Lifetime
from chaos.faults.match import UNKNOWN
from chaos.faults.registry import kinds
from chaos.faults.spec import Counters, FaultSpec
from chaos.faults.triggers import TriggerState
from chaos.vocab.endpoints import Endpoint

ADDED, REPLACED, REMOVED, CLEARED, EXPIRED = "added", "replaced", "removed", "cleared", "expired"
CHANGES = (ADDED, REPLACED, REMOVED, CLEARED, EXPIRED)

Listener = Callable[[str, FaultSpec], None]


class DuplicateFault(UsageError):
    """A fault with this name is already active."""


class UnknownFault(UsageError):
    """No active fault has this name."""


class ActiveFault:
    """One added fault: its spec, its kind instance, trigger state and lifetime."""

    def __init__(self, spec: FaultSpec, clock: Callable[[], float]):
        self.spec = spec
        # The kind holds any per-fault state it keeps.
        whole = spec.match.whole_connections and not spec.trigger.picks_requests
        self.kind: FaultKind = kinds()[spec.kind](spec.params, whole_connections=whole)
        self.trigger = TriggerState(spec.trigger, clock())
        self.lifetime = Lifetime(spec.expires_at, clock)
        self.applied = 0

    @property
    def counters(self) -> Counters:
        return Counters(self.trigger.matched, self.trigger.fired, self.applied)


class FaultSet:
    """Active faults in insertion order; expired ones vanish the next time anyone looks."""

    def __init__(self, clock: Callable[[], float] = time.time, listener: Listener | None = None):
        self._clock = clock
        self._faults: dict[str, ActiveFault] = {}
        self.listener = listener

    def add(self, spec: FaultSpec) -> None:
        self.prune()
        if spec.name in self._faults:
            raise DuplicateFault(f"fault {quoted(spec.name)} already exists")
        self._faults[spec.name] = ActiveFault(spec, self._clock)
        self._tell(ADDED, spec)

    def replace(self, spec: FaultSpec) -> None:
        """Swap the fault of the same name, keeping its place in the order.

        The new fault starts afresh: counters at zero, its time window from now.
        """
        self.prune()
        old = self._faults.get(spec.name)
        if old is None:
            raise UnknownFault(f"no fault named {quoted(spec.name)}")
        self._faults[spec.name] = ActiveFault(spec, self._clock)
        old.lifetime.end()
        self._tell(REPLACED, spec)

    def remove(self, name: str) -> None:
        self.prune()
        removed = self._faults.pop(name, None)
        if removed is None:
            raise UnknownFault(f"no fault named {quoted(name)}")
        removed.lifetime.end()
        self._tell(REMOVED, removed.spec)

    def clear(self) -> int:
        """Remove every fault; returns how many were active."""
        self.prune()
        cleared = list(self._faults.values())
        self._faults.clear()
        for active in cleared:
            active.lifetime.end()
            self._tell(CLEARED, active.spec)
        return len(cleared)

    def specs(self) -> list[FaultSpec]:
        """Active specs in order, each with a snapshot of its counters."""
        self.prune()
        return [dataclasses.replace(a.spec, counters=a.counters) for a in self._faults.values()]

    def matching(
        self, host: str, method: str, endpoint: Endpoint, client: str | None = None, origin: str = UNKNOWN
    ) -> list[ActiveFault]:
        """Faults whose match criteria take this request (no trigger decision, no counting)."""
        self.prune()
        return [
            a for a in self._faults.values() if a.spec.match.matches(host, method, endpoint, client, origin)
        ]

    def may_match(self, host: str, endpoint: Endpoint, client: str | None = None, origin: str = UNKNOWN) -> bool:
        """Whether any active fault could match a request for `endpoint` on
        `host`, whatever its method and whatever its trigger decides (Match.may_match)."""
        if not self._faults:
            return False
        self.prune()
        return any(a.spec.match.may_match(host, endpoint, client, origin) for a in self._faults.values())

    def fire(
        self,
        host: str,
        method: str,
        endpoint: Endpoint,
        client: str | None = None,
        *,
        origin: str = UNKNOWN,
        connect: bool = False,
    ) -> list[ActiveFault]:
        """The faults that act on this request, in order, after each matching
        fault's trigger decided (and counted). `connect`: the request is a
        CONNECT, which only kinds with on_connect see."""
        if not self._faults:
            return []
        now = self._clock()
        self.prune(now)
        fired = []
        for active in self._faults.values():
            if connect and not active.kind.acts_on_connect:
                continue
            if active.spec.match.matches(host, method, endpoint, client, origin) and active.trigger.decide(now):
                fired.append(active)
        return fired

    def next_expiry(self) -> float | None:
        """When the next active fault expires (clock time), or None without faults."""
        return min((a.spec.expires_at for a in self._faults.values()), default=None)

    def prune(self, now: float | None = None) -> None:
        """Drop the faults that have expired by `now`, ending their lifetimes."""
        now = self._clock() if now is None else now
        for name in [n for n, a in self._faults.items() if a.spec.expires_at <= now]:
            expired = self._faults.pop(name)
            expired.lifetime.end()
            self._tell(EXPIRED, expired.spec)

    def _tell(self, change: str, spec: FaultSpec) -> None:
        if self.listener is not None:
            self.listener(change, spec)
