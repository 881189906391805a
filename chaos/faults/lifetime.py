"""Lifetime: when an active fault ends (removed, replaced, reset or expired).

Kinds that hold a request or a response (latency, blackhole, stall) wait on it,
and body filters that act while a body streams (bandwidth, truncate, corrupt,
reset) are told through on_end, so removing a fault, or its expiry, releases
whatever it holds: no fault outlives itself on a flow in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Lifetime:
    """When an active fault ends: removed, replaced, reset, or expired."""

    def __init__(self, expires_at: float, clock: Callable[[], float]):
        self.expires_at = expires_at
        self._clock = clock
        self._removed = asyncio.Event()  # binds to the running loop on first wait
        self._waiting: dict[object, Callable[[], None]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def end(self) -> None:
        self._removed.set()
        self._run_callbacks()

    @property
    def ended(self) -> bool:
        return self._removed.is_set() or self._clock() >= self.expires_at

    def on_end(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` once, on the running loop, when the fault ends (soon, if
        it already has). Returns a function that cancels the call: cancel when the
        flow is over, so a long-lived fault keeps no finished flow's callback.
        Expiry is heard through a timer on the running loop (the proxy's hooks
        always have one); without a loop only end() is heard."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self.ended:
            if loop is None:
                callback()
                return lambda: None
            return loop.call_soon(callback).cancel
        token = object()
        self._waiting[token] = callback
        if self._timer is None and loop is not None:
            # Expiry needs no call from anyone, so it needs a timer of its own.
            self._timer = loop.call_later(self._until_expiry(), self._check_expiry)

        def cancel() -> None:
            self._waiting.pop(token, None)
            if not self._waiting and self._timer is not None:
                self._timer.cancel()
                self._timer = None

        return cancel

    def _until_expiry(self) -> float:
        # The clock may be wall time and the loop's is monotonic: fire a little
        # late rather than early, and never spin on a clock slightly behind.
        return max(self.expires_at - self._clock(), 0.0) + 0.005

    def _check_expiry(self) -> None:
        self._timer = None
        if self.ended:
            self._run_callbacks()
        elif self._waiting:
            self._timer = asyncio.get_running_loop().call_later(self._until_expiry(), self._check_expiry)

    def _run_callbacks(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, {}
        for callback in waiting.values():
            callback()

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
