"""Prometheus metrics of the fault proxy, served by the control API at GET /metrics.

For teams that leave the proxy in front of a staging mirror: how many requests
went to Hub and what came back, how many bytes, which faults fired and acted,
by Hub role, endpoint kind and origin. Counted from the same records as the
event tap (one observation per tap event), so the two never disagree.

Each proxy keeps its own CollectorRegistry (never prometheus_client's global
one), so two addons in one process (tests) do not collide. Label values come
from closed sets (roles, endpoint kinds, origins, methods Hub serves, status
codes) except `fault`, a fault's name: the series of the MAX_FAULT_NAMES
names that fired most recently are kept, and an older name's are dropped, so a
proxy left in front of a staging mirror, given faults under ever new names
(one per CI build), keeps the recent faults' counts without growing a series
per name for ever. (A dropped name that fires again starts from zero, which
Prometheus reads as a counter reset.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

REQUEST_LABELS = ("role", "kind", "origin")
MAX_FAULT_NAMES = 200
# Seconds from the request's first byte to its end (last response byte or error).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ProxyMetrics:
    """The proxy's metrics; `observe` once per tap event, `render` for a scrape."""

    def __init__(self, faults_active: Callable[[], int], in_flight: Callable[[], int],
                 tunnels_open: Callable[[], int] = lambda: 0):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hub_chaos_requests",
            "Requests the proxy handled for Hub (one per tap event), by the status the client got"
            " ('none' when no response reached it).",
            (*REQUEST_LABELS, "method", "status"),
            registry=self.registry,
        )
        self.response_bytes = Counter(
            "hub_chaos_response_body_bytes",
            "Response body bytes sent to clients.",
            REQUEST_LABELS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "hub_chaos_request_duration_seconds",
            "Time from a request's start to its end (last response byte or error), faults' holds included.",
            REQUEST_LABELS,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.faults_fired = Counter(
            "hub_chaos_faults_fired",
            "Requests a fault's trigger picked.",
            ("fault", "fault_kind", *REQUEST_LABELS),
            registry=self.registry,
        )
        self.faults_applied = Counter(
            "hub_chaos_faults_applied",
            "Requests a fault acted on, as the client got them.",
            ("fault", "fault_kind", *REQUEST_LABELS),
            registry=self.registry,
        )
        self.started = Counter(
            "hub_chaos_requests_started",
            "Requests the proxy began handling (intercepted ones: each ends as one tap event;"
            " relayed tunnels are counted by hub_chaos_passthrough_*).",
            registry=self.registry,
        )
        self.tunnels = Counter(
            "hub_chaos_passthrough_tunnels",
            "CONNECT tunnels relayed unopened (no fault could match them when they opened), by what moved"
            " their bytes: splice (two threads, splice(2)) or proxy (mitmproxy's event loop).",
            ("relay",),
            registry=self.registry,
        )
        self.passthrough_bytes = Counter(
            "hub_chaos_passthrough_bytes",
            "Bytes relayed through unopened tunnels (TLS records), counted as they pass:"
            " up = client to upstream, down = upstream to client.",
            ("direction",),
            registry=self.registry,
        )
        self.refused_hosts = Counter(
            "hub_chaos_refused_host_requests",
            "Requests and CONNECTs refused with 403 because they named a host other than Docker Hub's.",
            registry=self.registry,
        )
        # Each fault name's series (label tuples), least recently fired first.
        self._fault_series: OrderedDict[str, set[tuple[str, ...]]] = OrderedDict()
        self._fault_series_lock = threading.Lock()
        Gauge("hub_chaos_faults_active", "Faults active now.", registry=self.registry).set_function(faults_active)
        Gauge(
            "hub_chaos_requests_in_flight", "Requests seen and not yet ended.", registry=self.registry
        ).set_function(in_flight)
        Gauge(
            "hub_chaos_passthrough_tunnels_open", "Relayed tunnels open now (busy or idle).", registry=self.registry
        ).set_function(tunnels_open)

    def observe(self, event: dict[str, Any], fired: Iterable[tuple[str, str]], applied: Iterable[str]) -> None:
        """Count one tap event; `fired`: (name, kind) of the faults that fired for
        it; `applied`: names of those that acted on it."""
        labels = (event["role"], event["kind"], event["origin"])
        status = event["status"]
        self.requests.labels(*labels, event["method"], "none" if status is None else str(status)).inc()
        self.response_bytes.labels(*labels).inc(event["bytes"])
        self.duration.labels(*labels).observe(max(event["latency_ms"], 0.0) / 1000)
        acted = set(applied)
        for name, kind in fired:
            self._count_fault((name, kind, *labels), acted=name in acted)

    def _count_fault(self, series: tuple[str, ...], *, acted: bool) -> None:
        name = series[0]
        with self._fault_series_lock:
            self._fault_series.setdefault(name, set()).add(series)
            self._fault_series.move_to_end(name)
            self.faults_fired.labels(*series).inc()
            if acted:
                self.faults_applied.labels(*series).inc()
            while len(self._fault_series) > MAX_FAULT_NAMES:
                _, dropped = self._fault_series.popitem(last=False)
                for old in dropped:
                    self.faults_fired.remove(*old)
                    self.faults_applied.remove(*old)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape with this Accept header: (body, content type).
        Prometheus asks for OpenMetrics; anything else gets the text format."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
