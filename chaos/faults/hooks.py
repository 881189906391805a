"""How the faults that fired act on a flow, phase by phase, and the record of
which of them acted (flow.metadata[APPLIED] and each fault's `applied` count).

The faults act in insertion order (the order they were added; PUT keeps a
fault's place), phase by phase:

  1. on_connect / on_request (sync): the first that kills or answers the flow
     ends the phase; later ones do not act on it.
  2. hold_request (async, e.g. latency, blackhole): awaited one after the other,
     so two latencies add up.
  3. on_response_headers (sync): stops once one kills the flow.
  4. body_filter: filters are chained in order (the first sees the upstream's
     bytes, the last feeds the client), and their end-of-body actions run in
     order when the upstream's body is complete. A fault that ends while its
     response streams releases its filter (BodyFilter.release): the rest of
     the body is left alone, and a filter that had not acted yet is taken off
     the flow's record and its fault's `applied` count.

Which faults fired for the request is FaultSet.fire's decision (faultset.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chaos.faults.body import BodyFilter
from chaos.faults.faultset import ActiveFault
from chaos.faults.flowdata import APPLIED

__all__ = ["APPLIED", "FilterChain", "body_filters", "hold_request", "needs_hold", "note_applied", "run_hook"]


def note_applied(active: ActiveFault, flow: Any) -> None:
    """Record that `active` acted on `flow` (once per flow, whatever the phase)."""
    names = flow.metadata.setdefault(APPLIED, [])
    if active.spec.name not in names:
        names.append(active.spec.name)
        active.applied += 1


def _unnote_applied(active: ActiveFault, flow: Any) -> None:
    """Undo note_applied: the fault's filter was released before it changed anything."""
    names = flow.metadata.get(APPLIED, [])
    if active.spec.name in names:
        names.remove(active.spec.name)
        active.applied -= 1


def _ended(active: ActiveFault) -> bool:
    return active.lifetime is not None and active.lifetime.ended


def run_hook(faults: list[ActiveFault], hook: str, flow: Any) -> list[str]:
    """Call `hook` ("on_connect", "on_request", "on_response_headers") on each fault in
    order; return the names of those that acted. Stops once the flow is killed or,
    before the response phase, answered: later faults have nothing left to act on."""
    applied = []
    for active in faults:
        if _ended(active):
            continue  # removed or expired since it fired (a hold outlasted it): it acts no more
        if getattr(active.kind, hook)(flow):
            applied.append(active.spec.name)
            note_applied(active, flow)
        if flow.error is not None or (hook != "on_response_headers" and flow.response is not None):
            break
    return applied


def needs_hold(faults: list[ActiveFault]) -> bool:
    return any(active.kind.hold_request is not None for active in faults)


async def hold_request(faults: list[ActiveFault], flow: Any) -> None:
    """Await each fault's hold_request in order, until one kills or answers the flow."""
    for active in faults:
        if active.kind.hold_request is None:
            continue
        if await active.kind.hold_request(flow, active.lifetime):
            note_applied(active, flow)
        if flow.error is not None or flow.response is not None or not flow.live:
            return


class FilterChain:
    """The response.stream callable when body filters apply: each filter in
    fault order, then `sink` (the addon's byte counter) sees what the client gets.

    Built inside a proxy hook (an event loop runs): each filter is released when
    its fault ends, until close()."""

    def __init__(
        self, filters: list[tuple[ActiveFault, BodyFilter]], sink: Callable[[bytes], bytes], flow: Any = None
    ):
        self.filters = filters
        self._steps = [f for _, f in filters]
        self._sink = sink
        self._cancels = [
            active.lifetime.on_end(self._releaser(active, step, flow))
            for active, step in filters
            if active.lifetime is not None
        ]

    @staticmethod
    def _releaser(active: ActiveFault, step: BodyFilter, flow: Any) -> Callable[[], None]:
        def release() -> None:
            step.release()
            if not step.acted and flow is not None:
                _unnote_applied(active, flow)

        return release

    def __call__(self, chunk: bytes) -> bytes:
        for step in self._steps:
            chunk = step(chunk)
        return self._sink(chunk)

    @property
    def ends_response(self) -> bool:
        return any(f.ends_response for f in self._steps)

    async def finish(self, flow: Any) -> None:
        """Run the filters' end-of-body actions in order, stopping once the flow is killed."""
        for active, step in self.filters:
            if step.ends_response and flow.error is None:
                await step.finish(flow, active.lifetime)

    def close(self) -> None:
        for cancel in self._cancels:
            cancel()
        self._cancels = []
        for step in self._steps:
            step.close()


def body_filters(faults: list[ActiveFault], flow: Any) -> list[tuple[ActiveFault, BodyFilter]]:
    """Ask each fault, in order, for a body filter for this response."""
    filters = []
    for active in faults:
        if _ended(active):
            continue
        step = active.kind.body_filter(flow)
        if step is not None:
            filters.append((active, step))
            note_applied(active, flow)
    return filters
