"""The event tap: a bounded ring of upstream-bound requests that readers page through.

Readers hold a cursor (the last id they saw) and ask for what came after it, so
they never miss or repeat an event. When the ring overflowed between two reads
the oldest events are gone; `since` then says how many were lost (`dropped`)
instead of pretending nothing happened.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Any

EVENT_FIELDS = frozenset(
    {
        "ts",  # unix time the request started (its first byte reached the proxy)
        "ts_end",  # unix time it ended: the last response byte went out, or the error
        "host",  # the host the client addressed
        "role",  # registry | auth | cdn | other
        "kind",  # endpoint kind (chaos.vocab.endpoints.KINDS)
        "repository",  # "library/alpine", or None
        "reference",  # tag or digest, or None
        "method",
        "path",  # path and query as the client sent them
        "status",  # int, or None when no response reached the client
        "bytes",  # response body bytes actually sent to the client
        "fault",  # names of the faults that acted, comma-separated, or None
        "error",  # mitmproxy's error text, or None
        "latency_ms",  # (ts_end - ts) in milliseconds: how long the request was held open
        "client",  # "host:port" of the peer
        "origin",  # who asked: chaos.vocab.names.ORIGINS, by the listener (hub_origins)
        "tunnel",  # None, or for a tunnel relayed unopened: {"id", "bytes_up", "closed"} (chaos.proxy.passthrough)
    }
)
"""Every event has exactly these keys (plus "id"); docs/control-api.md describes them."""


@dataclass(frozen=True)
class Page:
    events: list[dict[str, Any]]
    next: int  # the cursor to pass next time
    dropped: int  # events after the cursor that were evicted before this read


class EventTap:
    """Append-only ring buffer of event dicts with monotonically increasing ids (from 1)."""

    def __init__(self, capacity: int = 10000):
        if capacity < 1:
            raise ValueError(f"tap capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._events: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._last_id = 0
        # The control API may be read from another thread in tests and tools.
        self._lock = threading.Lock()

    @property
    def last_id(self) -> int:
        return self._last_id

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Store a copy of `event` under the next id and return the stored copy."""
        missing = EVENT_FIELDS - event.keys()
        unknown = event.keys() - EVENT_FIELDS - {"id"}
        if missing or unknown:
            raise ValueError(
                f"tap event fields wrong: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        with self._lock:
            self._last_id += 1
            stored = {**event, "id": self._last_id}
            self._events.append(stored)
        return stored

    def since(self, cursor: int, limit: int = 1000) -> Page:
        """Events with id > cursor, oldest first, at most `limit` of them.

        `next` is the id of the last event returned (or of the newest evicted one
        when only dropped events lay after the cursor), so passing it back never
        repeats or skips an event. A cursor beyond the newest id means the reader
        talks to a different (restarted) tap: that is a ValueError, not silence.
        """
        if cursor < 0:
            raise ValueError(f"cursor must be >= 0, got {cursor}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        with self._lock:
            if cursor > self._last_id:
                raise ValueError(
                    f"cursor {cursor} is ahead of the newest event {self._last_id}"
                    " (was the proxy restarted?)"
                )
            first_id = self._last_id - len(self._events) + 1
            dropped = max(0, first_id - cursor - 1)
            start = max(cursor + 1, first_id) - first_id
            events = [dict(e) for e in islice(self._events, start, start + limit)]
        if events:
            next_cursor = events[-1]["id"]
        else:
            next_cursor = cursor + dropped
        return Page(events, next_cursor, dropped)
