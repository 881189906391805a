"""bandwidth: the response body streams at `rate_kbps` kilobytes per second.

Units: 1 kB = 1000 bytes, so rate_kbps 500 is 500 000 bytes of body per
second (headers are not paced); at least MIN_RATE_KBPS, so one read of the
paced connection (16 KiB) never waits more than about 16 s. The rate holds per
response, for each response on its own; other flows are not slowed, and
nothing is buffered: the proxy reads from the upstream only as fast as the
rate allows (chaos.faults.pacer). When the fault is removed or expires, the
responses it paces go on at full speed at once.
Where the upstream connection cannot be reached (see chaos.faults.transports)
the fault does not act, and the tap shows it did not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mitmproxy import http

from chaos.faults.body import BodyFilter, has_body
from chaos.faults.kind import FaultKind
from chaos.faults.pacer import ReadPacer
from chaos.faults.registry import register
from chaos.faults.spec import ParamError
from chaos.faults.transports import server_transport

log = logging.getLogger(__name__)

MIN_RATE_KBPS = 1.0
"""The floor of rate_kbps: 1000 bytes per second."""


@register
class Bandwidth(FaultKind):
    name = "bandwidth"

    @dataclass(frozen=True)
    class Params:
        rate_kbps: float  # kilobytes (1000 bytes) per second

        def __post_init__(self) -> None:
            if self.rate_kbps < MIN_RATE_KBPS:
                raise ParamError("rate_kbps", f"must be at least {MIN_RATE_KBPS:g} (1000 bytes/s), got {self.rate_kbps:g}")

    def body_filter(self, flow: http.HTTPFlow) -> BodyFilter | None:
        if not has_body(flow):
            return None
        transport = server_transport(flow)
        if transport is None:
            log.warning(f"hub-chaos: bandwidth: cannot pace {flow.request.pretty_url}: no upstream transport")
            return None
        return ReadPacer(transport, self.params.rate_kbps * 1000)
