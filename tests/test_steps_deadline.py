"""Work bounded by a deadline, in daemon threads that never hold the process."""

from __future__ import annotations

import threading
import time

import pytest

from chaos.steps.deadline import DeadlineExceeded, call_with_deadline, map_with_deadline


def test_result_and_exception_come_back():
    assert call_with_deadline(lambda: 42, 5) == 42
    with pytest.raises(ZeroDivisionError):
        call_with_deadline(lambda: 1 / 0, 5)


def test_a_stuck_call_is_abandoned_at_the_deadline_in_a_daemon_thread():
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call_with_deadline(lambda: release.wait(30), 0.2, name="stuck")
    assert time.monotonic() - started < 2
    stuck = [t for t in threading.enumerate() if t.name == "stuck"]
    assert stuck and all(t.daemon for t in stuck)
    release.set()


def test_map_keeps_order_and_bounds_concurrency():
    running, peak, lock = [0], [0], threading.Lock()

    def work(n):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return n * n

    assert map_with_deadline(work, [1, 2, 3, 4, 5], workers=2, timeout_s=10) == [1, 4, 9, 16, 25]
    assert peak[0] == 2


def test_map_deadline():
    with pytest.raises(DeadlineExceeded):
        map_with_deadline(lambda n: time.sleep(5), [1, 2], workers=2, timeout_s=0.2)
