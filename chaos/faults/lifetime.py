"""Lifetime: when an active fault ends (removed, replaced, reset or expired).

Kinds that hold a request or a response (latency, blackhole, stall) wait on it,
so removing a fault, or its expiry, releases what it holds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


class Lifetime:
    """When an active fault ends: removed, replaced, reset, or expired."""

    def __init__(self, expires_at: float, clock: Callable[[], float]):
        self.expires_at = expires_at
        self._clock = clock
        self._removed = asyncio.Event()  # binds to the running loop on first wait

    def end(self) -> None:
        self._removed.set()

    @property
    def ended(self) -> bool:
        return self._removed.is_set() or self._clock() >= self.expires_at

    async def wait(
        self, timeout_s: float | None = None, abandoned: Callable[[], bool] | None = None
    ) -> bool:
        """Wait until the fault ends or `timeout_s` passes; True when the fault ended.

        `abandoned`, when given, is polled about once a second: when it says True
        (say, the client went away) the wait stops early and returns False.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.ended:
            step = self.expires_at - self._clock()
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    return False
            if abandoned is not None:
                step = min(step, 1.0)
            try:
                await asyncio.wait_for(self._removed.wait(), max(step, 0.0))
            except TimeoutError:
                if abandoned is not None and abandoned():
                    return False
        return True
