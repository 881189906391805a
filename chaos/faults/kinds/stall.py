"""stall: headers and the first `after_bytes` of the body arrive, then nothing.

The connection stays open and silent until the fault is removed or expires, or
`stall_ms` passes (when given), or the client gives up; then it is closed. The
classic hung CDN download: clients without a read timeout hang with it.
The rest of the upstream's body is read and dropped meanwhile, not buffered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from chaos.faults.body import BodyFilter, CutAfter, has_body
from chaos.faults.kind import FaultKind
from chaos.faults.lifetime import Lifetime
from chaos.faults.registry import register


@register
class Stall(FaultKind):
    name = "stall"

    @dataclass(frozen=True)
    class Params:
        after_bytes: int = 0
        stall_ms: int | None = None  # None: until the fault is removed or expires

    def body_filter(self, flow: http.HTTPFlow) -> BodyFilter | None:
        if not has_body(flow):
            return None
        return _Stalled(self.params.after_bytes, self.params.stall_ms)


class _Stalled(CutAfter):
    cuts = True

    def __init__(self, after_bytes: int, stall_ms: int | None):
        super().__init__(after_bytes)
        self._stall_s = None if stall_ms is None else stall_ms / 1000

    async def finish(self, flow: Any, lifetime: Lifetime) -> None:
        await lifetime.wait(self._stall_s, abandoned=lambda: not flow.client_conn.connected)
        flow.kill()
