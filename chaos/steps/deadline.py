"""Run work in daemon threads, bounded by a deadline.

Daemon threads, not a ThreadPoolExecutor: a pull stuck behind a blackholed
upstream must never keep the process alive after the run ended (executor
threads are joined at interpreter exit); the client's own timeouts end it
eventually, but nobody waits for that.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    pass


def call_with_deadline(fn: Callable[[], T], timeout_s: float, name: str = "step") -> T:
    """fn() in a daemon thread; its result, its exception, or DeadlineExceeded.
    Waiting is interruptible (Ctrl-C raises KeyboardInterrupt here)."""
    box: queue.Queue = queue.Queue(maxsize=1)

    def target() -> None:
        try:
            box.put((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
            box.put((False, exc))

    threading.Thread(target=target, name=name, daemon=True).start()
    try:
        ok, value = box.get(timeout=max(0.0, timeout_s))
    except queue.Empty:
        raise DeadlineExceeded(f"no result within {timeout_s:g}s") from None
    if ok:
        return value
    raise value


def map_with_deadline(fn: Callable[[T], object], items: Sequence[T], workers: int, timeout_s: float) -> list:
    """fn over items, at most `workers` at a time, results in order; raises
    DeadlineExceeded when not all are done within timeout_s."""
    results: list = [None] * len(items)
    pending: queue.Queue = queue.Queue()
    for index in range(len(items)):
        pending.put(index)
    done: queue.Queue = queue.Queue()

    def worker() -> None:
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((index, True, fn(items[index])))
            except BaseException as exc:  # noqa: BLE001
                done.put((index, False, exc))

    for n in range(max(1, min(workers, len(items)))):
        threading.Thread(target=worker, name=f"pull-{n}", daemon=True).start()
    end = time.monotonic() + timeout_s
    for _ in range(len(items)):
        try:
            index, ok, value = done.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            raise DeadlineExceeded(f"not all {len(items)} done within {timeout_s:g}s") from None
        if not ok:
            raise value
        results[index] = value
    return results
