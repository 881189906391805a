"""truncate: the body ends early, then the connection closes (a FIN, not a reset).

The client gets the headers as sent (Content-Length included) and only the
first `after_bytes` of the body, or the first `fraction` of its Content-Length;
then its connection is closed, so it sees a short read. Give exactly one of the
two. A response without Content-Length is left alone under `fraction`. The
close comes once the upstream's body has been read through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from chaos.faults.body import BodyFilter, CutAfter, content_length, has_body
from chaos.faults.kind import FaultKind
from chaos.faults.lifetime import Lifetime
from chaos.faults.registry import register
from chaos.faults.spec import ParamError


@register
class Truncate(FaultKind):
    name = "truncate"

    @dataclass(frozen=True)
    class Params:
        after_bytes: int | None = None
        fraction: float | None = None  # of Content-Length, 0..1 (exclusive of 1)

        def __post_init__(self) -> None:
            if (self.after_bytes is None) == (self.fraction is None):
                raise ParamError("after_bytes", "give exactly one of after_bytes or fraction")
            if self.fraction is not None and not 0 <= self.fraction < 1:
                raise ParamError("fraction", f"expected a number from 0 to below 1, got {self.fraction}")

    def body_filter(self, flow: http.HTTPFlow) -> BodyFilter | None:
        if not has_body(flow):
            return None
        keep = self.params.after_bytes
        if keep is None:
            length = content_length(flow)
            if length is None:
                return None
            keep = int(length * self.params.fraction)
        return _Truncated(keep)


class _Truncated(CutAfter):
    cuts = True

    async def finish(self, flow: Any, lifetime: Lifetime) -> None:
        flow.kill()
