"""blackhole: the request is accepted and never answered.

The connection stays open and silent (nothing is sent upstream) until the
fault is removed or expires, or the client gives up; then the connection is
closed. Clients see their own timeouts, as when a firewall drops packets or a
load balancer hangs. Other flows are not held: only this request waits.
Tunnels are not held, requests inside them are.
"""

from __future__ import annotations

from mitmproxy import http

from chaos.faults.kind import FaultKind
from chaos.faults.lifetime import Lifetime
from chaos.faults.registry import register


@register
class Blackhole(FaultKind):
    name = "blackhole"

    async def hold_request(self, flow: http.HTTPFlow, lifetime: Lifetime) -> bool:
        await lifetime.wait(abandoned=lambda: not flow.client_conn.connected)
        if flow.killable:
            flow.kill()
        return True
