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
is reaching the transport through mitmproxy internals (chaos.faults.transports).

Released (the fault was removed or expired), the pacer resumes reading at once
and passes the rest of the body at full speed: a throttle never outlives its fault.

Accuracy: bytes already read when the pause begins still flow, and the debt
of the last chunk is never waited for. asyncio reads up to 256 KiB per socket
read, so while a body is paced its transport reads at most 1/20 s worth of
the rate (at least 16 KiB; restored afterwards): what slips through ahead of
the rate is then that plus mitmproxy's 64 KiB buffer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from chaos.faults.body import BodyFilter

MIN_READ_BYTES = 16 * 1024


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
        self._released = False
        # Smaller socket reads, so one read cannot run far ahead of the rate.
        # max_size is a class attribute of asyncio's selector transports; the
        # instance attribute shadows it until close() removes it again.
        self._shrunk_reads = "max_size" in dir(transport) and "max_size" not in vars(transport)
        if self._shrunk_reads:
            transport.max_size = int(min(transport.max_size, max(MIN_READ_BYTES, rate_bytes_per_s / 20)))

    def __call__(self, chunk: bytes) -> bytes:
        if chunk and not self._released:
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

    def release(self) -> None:
        # The fault ended: the rest of the body goes at full speed.
        self._released = True
        self.close()

    def close(self) -> None:
        # The connection may carry the client's next request: never leave it paused or slowed.
        if self._shrunk_reads:
            self._shrunk_reads = False
            vars(self._transport).pop("max_size", None)
        if self._resume is not None:
            self._resume.cancel()
            self._resume_reading()
