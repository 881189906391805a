"""reset: the request reaches Hub, then the connection dies before the answer.

The upstream sees and serves the request (so side effects such as a counted
pull happen), but the client gets its connection closed with no response byte.
"""

from __future__ import annotations

from mitmproxy import http

from chaos.faults.base import FaultKind
from chaos.faults.registry import register


@register
class Reset(FaultKind):
    name = "reset"

    def on_response_headers(self, flow: http.HTTPFlow) -> bool:
        flow.kill()
        return True
