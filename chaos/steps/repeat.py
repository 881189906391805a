"""`repeat:` for the kinds that repeat (pull, push, check): attempts until
the count or duration is reached, within the step's deadline, stopping early
on Ctrl-C."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from chaos.language.model import Repeat

T = TypeVar("T")
DEADLINE_MARGIN_S = 0.5  # leave the step this long to wrap up after its last attempt


def repeated(repeat: Repeat, deadline: float, cancelled, once: Callable[[], Sequence[T]]) -> list[T]:
    """Call once() until `repeat` is satisfied or time is up; every attempt's results, in order."""
    stop_at = time.monotonic() + repeat.duration_s if repeat.duration_s else deadline
    results: list[T] = []
    runs = 0
    while (
        (repeat.times is None or runs < repeat.times)
        and time.monotonic() < min(stop_at, deadline - DEADLINE_MARGIN_S)
        and not cancelled.is_set()
    ):
        if runs and repeat.interval_s:
            cancelled.wait(min(repeat.interval_s, max(0.0, deadline - time.monotonic() - DEADLINE_MARGIN_S)))
        results.extend(once())
        runs += 1
    return results
