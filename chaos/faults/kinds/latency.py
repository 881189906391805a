"""latency: the request waits `delay_ms` (plus up to `jitter_ms` more) before it
goes upstream, so the response arrives that much later. Other flows are not held.

The jitter is uniform in [0, jitter_ms], so every response is late by at least
`delay_ms`. Removing the fault (or its expiry) releases waiting requests at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from chaos.faults.kind import FaultKind
from chaos.faults.lifetime import Lifetime
from chaos.faults.registry import register


@register
class Latency(FaultKind):
    name = "latency"

    @dataclass(frozen=True)
    class Params:
        delay_ms: int
        jitter_ms: int = 0

    def __init__(self, params: Params, **framework: Any):
        super().__init__(params, **framework)
        self._random = random.Random()

    async def hold_request(self, flow: http.HTTPFlow, lifetime: Lifetime) -> bool:
        delay_ms = self.params.delay_ms + self._random.uniform(0, self.params.jitter_ms)
        await lifetime.wait(delay_ms / 1000)
        return True
