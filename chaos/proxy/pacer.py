"""Pace a streamed response body to a byte rate without sleeping and without buffering.

mitmproxy calls the response.stream callable synchronously for every chunk it
reads from the upstream, and forwards what it returns at once; it must never
sleep. So instead of delaying chunks, ReadPacer delays the *next read*: it keeps
a token bucket, and when a chunk puts it in debt it pauses reading from the
upstream's transport (asyncio's pause_reading) and schedules resume_reading for
when the debt is paid. The upstream then meets TCP back-pressure, nothing piles
up in memory, and other flows never wait: only this connection stops reading.

Why not a relay (a loopback TCP hop that sleeps between writes)? It costs a
second socket pair and a copy of every byte, cannot follow an HTTPS upstream's
SNI, and mitmproxy would reuse its paced connection for the client's next,
unthrottled request. Pausing mitmproxy's own read has none of these; its cost
is reaching the transport through mitmproxy internals (chaos.proxy.transports).

Accuracy: bytes already read into mitmproxy's stream buffer (at most about
128 KiB) still flow while paused, so a body starts with a burst of that size
and then holds the rate; the debt of the last chunk is not waited for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from chaos.faults.base import BodyFilter


class TokenBucket:
    """Bytes allowed per second; `take` returns how long to wait to be back in credit."""

    def __init__(self, rate_bytes_per_s: float, burst_bytes: float, clock: Callable[[], float] = time.monotonic):
        if rate_bytes_per_s <= 0:
            raise ValueError(f"rate must be positive, got {rate_bytes_per_s}")
        self.rate = rate_bytes_per_s
        self.burst = burst_bytes
        self._clock = clock
        self._tokens = 0.0  # start empty: no free burst before the first byte
        self._last = clock()

    def take(self, size: int) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= size
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class ReadPacer(BodyFilter):
    """A body filter that paces `transport` (the upstream connection) to `rate_bytes_per_s`."""

    def __init__(
        self,
        transport: Any,
        rate_bytes_per_s: float,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        # A bucket of 1/20 s worth of bytes: small enough that an idle moment
        # does not buy a visible burst, big enough to absorb timer jitter.
        self.bucket = TokenBucket(rate_bytes_per_s, rate_bytes_per_s / 20, clock)
        self._transport = transport
        self._loop = loop or asyncio.get_running_loop()
        self._resume: asyncio.TimerHandle | None = None

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            wait_s = self.bucket.take(len(chunk))
            if wait_s > 0 and not self._transport.is_closing():
                self._transport.pause_reading()
                if self._resume is not None:
                    self._resume.cancel()
                self._resume = self._loop.call_later(wait_s, self._resume_reading)
        return chunk

    def _resume_reading(self) -> None:
        self._resume = None
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        # The connection may carry the client's next request: never leave it paused.
        if self._resume is not None:
            self._resume.cancel()
            self._resume_reading()
