"""Waiting for the lab to go quiet at the end of a step.

A mirror keeps copying a blob into its storage after its client got it, and
may start that copy's upstream request only then (seen under load): without
this wait the copy's bytes land in the next step's tap events, or a fault the
next step switches on breaks a copy this step started.
"""

from __future__ import annotations

import time
from collections.abc import Callable

QUIET_DEADLINE_S = 3.0
QUIET_POLL_S = 0.05


def wait_for_quiet(
    in_flight: Callable[[], int],
    live_uploads: Callable[[], int],
    *,
    deadline_s: float = QUIET_DEADLINE_S,
    poll_s: float = QUIET_POLL_S,
) -> bool:
    """Wait until no request is in flight through the fault proxy and no upload
    is alive in the mirror's storage (live_uploads: 0 when it is not ours to
    see), twice in a row.
    deadline_s bounds the wait: a blackholed request never finishes. Returns
    whether the lab went quiet."""
    deadline = time.monotonic() + deadline_s
    quiet = 0
    while time.monotonic() < deadline:
        idle = in_flight() == 0 and not live_uploads()
        quiet = quiet + 1 if idle else 0
        if quiet >= 2:
            return True
        time.sleep(poll_s)
    return False
