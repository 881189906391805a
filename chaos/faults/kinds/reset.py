"""reset: the request reaches Hub, then the connection dies mid-response.

The upstream sees and serves the request (so side effects such as a counted
pull happen). With `after_bytes` 0 (the default) the client gets no response
byte at all; otherwise it gets the headers and at most `after_bytes` of body.
Then its connection is aborted with a TCP RST (SO_LINGER 0), as when a CDN
node or load balancer drops a connection; an RST discards what the client's
kernel had not yet delivered, so "at most". Where the socket cannot be reached
(HTTP/2 clients, where a kill resets the stream; other proxy modes) the
connection is closed instead. The cut comes once the upstream's body has been
read through, so on a large blob the client waits that long for it. With
`after_bytes` the kind acts on bodies, so, like every body kind, it leaves a
response without one alone (HEAD, 204, 304, Content-Length 0); with 0 it acts
on every response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from chaos.faults.body import BodyFilter, CutAfter, has_body
from chaos.faults.kind import FaultKind
from chaos.faults.lifetime import Lifetime
from chaos.faults.registry import register
from chaos.faults.transports import reset_on_close


@register
class Reset(FaultKind):
    name = "reset"

    @dataclass(frozen=True)
    class Params:
        after_bytes: int = 0

    def on_response_headers(self, flow: http.HTTPFlow) -> bool:
        if self.params.after_bytes:
            return False  # body_filter cuts later, and only a response with a body
        reset_on_close(flow)
        flow.kill()
        return True

    def body_filter(self, flow: http.HTTPFlow) -> BodyFilter | None:
        if self.params.after_bytes and has_body(flow):
            return _ResetAfter(self.params.after_bytes)
        return None


class _ResetAfter(CutAfter):
    cuts = True

    async def finish(self, flow: Any, lifetime: Lifetime) -> None:
        reset_on_close(flow)
        flow.kill()
