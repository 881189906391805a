"""HubChaos: the mitmproxy addon that routes Hub's host names to the lab, injects
faults and records every upstream-bound request in the event tap.

Hooks stay small; classification, routing, origins, the host policy, fault logic
(chaos.faults), metrics and the API live in their own modules. Hook order for
one request: requestheaders (host policy; classify; origin; the faults'
triggers decide; on_request; route; hold_request) -> responseheaders
(on_response_headers; body filters chained before the counting stream) ->
response (filters' end-of-body actions; tap event) | error (tap event). A
CONNECT goes through http_connect (host policy; on_connect) and, when refused,
http_connect_error (tap event).

Waiting faults (latency, blackhole, stall) need async hooks: mitmproxy awaits
whatever a hook returns when it is awaitable, per flow, while other flows carry
on. So requestheaders and response stay plain functions and return a coroutine
only when an active fault must wait: requests without such a fault pay nothing.
(flow.intercept()/resume() would also pause a flow, but then our own tap event
and the addons after us would run before the wait ends, and anyone's "resume
all" would cut a blackhole short.) Without body filters the stream callable is
the bare ByteCounter: no per-chunk work is added when no fault acts on a body.

Pass-through (chaos.proxy.passthrough): a CONNECT tunnel to the CDN whose
route is an https:// upstream, opened while no active fault could match it, is
relayed unopened (next_layer puts a PassThroughLayer in place of mitmproxy's
TLS interception; addons run before mitmproxy's own NextLayer). A fault added
later that could match such a tunnel dooms it (closed when idle, or before
the client's next request goes through). Its tap events say what the proxy can
see of it: bytes each way and when.

What the proxy logs (chaos.proxy.reporting): faults switched on and off (and
why: removed, reset, expired), control API calls refused, hosts refused, never
a flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from mitmproxy import ctx, http, tls
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers.http import HttpStream
from mitmproxy.proxy.mode_specs import ProxyMode

from chaos.errors import quoted
from chaos.faults.body import content_length, has_body
from chaos.faults.faultset import ADDED, REPLACED, ActiveFault, FaultSet
from chaos.faults.flowdata import ORIGIN
from chaos.faults.hooks import APPLIED, FilterChain, body_filters, hold_request, needs_hold, run_hook
from chaos.faults.spec import FaultSpec, FaultSpecError, parse_fault_spec
from chaos.faults.transports import shutdown_connection
from chaos.proxy.control_api import ControlServer, parse_control_address
from chaos.proxy.control_auth import read_token
from chaos.proxy.hosts import HostPolicy, parse_host_globs
from chaos.proxy.metrics import ProxyMetrics
from chaos.proxy.origins import origin_of, parse_origins
from chaos.proxy.passthrough import PASSTHROUGH_ROLES, PassThroughLayer, Period, Tunnel, Tunnels, tunnel_event
from chaos.proxy.reporting import (
    ALERT,
    HubOptionsError,
    describe_change,
    one_line_option_errors,
    quiet_shutdown,
    settle_deferred_options,
)
from chaos.proxy.routing import apply_route, parse_roles, parse_routes
from chaos.proxy.tap import EventTap
from chaos.vocab.endpoints import Endpoint, classify, role_of

log = logging.getLogger(__name__)

# flow.metadata keys; namespaced so other addons' keys never collide.
ENDPOINT = "hub_chaos.endpoint"
TARGET_HOST = "hub_chaos.host"  # the host the client addressed, before routing
FAULTS = APPLIED  # names of faults that acted on this flow
COUNTER = "hub_chaos.counter"
FIRED = "hub_chaos.fired"  # the faults whose triggers picked this flow, in order
FILTERS = "hub_chaos.filters"  # the FilterChain streaming this flow's body

OPTIONS = (
    "hub_routes", "hub_control", "hub_control_portfile", "hub_control_token_file", "hub_faults",
    "hub_tap_capacity", "hub_origins", "hub_allow_any_host", "hub_allow_hosts", "hub_passthrough",
    "hub_http2_roles",
)  # fmt: skip
"""The options load() declares."""

MAX_LOGGED_HOSTS = 1000
"""Refused hosts are logged once each, up to this many (then only counted in /metrics)."""


class ByteCounter:
    """A passthrough `response.stream` callable counting body bytes sent to the client.

    mitmproxy calls it synchronously for every chunk: it must never block.
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.count += len(chunk)
        return chunk


class _Then:
    """Another addon's stream callable (it saw the response first), then ours."""

    def __init__(self, first: Callable[[bytes], bytes], then: Callable[[bytes], bytes]):
        self.first = first
        self.then = then

    def __call__(self, chunk: bytes) -> bytes:
        return self.then(self.first(chunk))


class HubChaos:
    def __init__(self) -> None:
        self.routes: dict = {}
        self.faults = FaultSet(listener=self._fault_changed)
        self.tap = EventTap()
        self.control: ControlServer | None = None
        self.control_token: bytes | None = None
        self.origins: dict[int, str] = {}
        self.hosts = HostPolicy()
        # Flows classified but not yet recorded, by id (/healthz in_flight, /inflight).
        self.in_flight: dict[str, http.HTTPFlow] = {}
        self.passthrough = False
        self.http2_roles: tuple[str, ...] = ()
        self.tunnels = Tunnels()
        self.metrics = ProxyMetrics(lambda: len(self.faults.specs()), self.requests_in_flight,
                                    lambda: len(self.tunnels.open))
        self._refused_hosts: set[str] = set()
        self._expiry_watch: asyncio.Task | None = None
        self._quiet_shutdown: asyncio.Task | None = None

    def load(self, loader: Any) -> None:
        one_line_option_errors()
        loader.add_option(
            "hub_routes",
            str,
            "",
            """
            Re-route Docker Hub's services to other upstreams, keeping the Host header
            the client sent: comma-separated ROLE=URL with ROLE one of registry
            (registry-1.docker.io), auth (auth.docker.io), cdn (*.cloudflare.docker.com),
            e.g. "registry=http://127.0.0.1:5001,auth=http://127.0.0.1:5002".
            Empty: live mode, traffic goes to the real hosts unchanged.
            """,
        )
        loader.add_option(
            "hub_control",
            str,
            "127.0.0.1:5380",
            """
            HOST:PORT (an IP address) of the hub-chaos control API (faults, event tap,
            metrics). Loopback only, unless hub_control_token_file is set. Port 0 picks
            a free port (see hub_control_portfile); empty disables the API. Read when
            the proxy starts.
            """,
        )
        loader.add_option(
            "hub_control_portfile",
            str,
            "",
            "If set, write the control API's bound port to this file once it listens.",
        )
        loader.add_option(
            "hub_control_token_file",
            str,
            "",
            """
            File holding the control API's bearer token (at least 16 printable
            characters). When set, every call but GET /healthz needs
            "Authorization: Bearer <token>", and hub_control may be a non-loopback
            address. Empty: no token, loopback only.
            """,
        )
        loader.add_option(
            "hub_faults",
            str,
            "",
            """
            Faults active from the start: a JSON or YAML list of fault specs (text
            starting with "[" or "-"), or the path of a file holding one. Replaces
            all active faults when changed. Each fault still expires (ttl_s, default 300).
            """,
        )
        loader.add_option(
            "hub_tap_capacity",
            int,
            10000,
            "How many events the event tap keeps; older ones are dropped (and counted).",
        )
        loader.add_option(
            "hub_origins",
            str,
            "",
            """
            Who sends requests to which listener, so events and faults can tell them
            apart: comma-separated ORIGIN=PORT with ORIGIN one of mirror, client,
            push-registry and PORT a listener of this proxy (--mode regular@PORT),
            e.g. "mirror=8081,client=8082". Requests on other listeners have origin
            "unknown".
            """,
        )
        loader.add_option(
            "hub_allow_any_host",
            bool,
            False,
            """
            Forward requests for any host. Off: only Docker Hub's hosts
            (registry-1.docker.io, auth.docker.io, *.cloudflare.docker.com) and
            hub_allow_hosts are forwarded; others get 403, so a proxy listening beyond
            loopback is not an open proxy.
            """,
        )
        loader.add_option(
            "hub_allow_hosts",
            str,
            "",
            """
            More hosts to forward besides Docker Hub's: comma-separated host names or
            globs ("*.example.com"), e.g. storage hosts Hub's blob redirects point at.
            """,
        )
        loader.add_option(
            "hub_passthrough",
            bool,
            False,
            """
            Relay CONNECT tunnels to the CDN unopened (no TLS interception) while no
            active fault could match them, when hub_routes sends the CDN to an
            https:// upstream. That upstream must serve the CDN's host name with a
            certificate the clients trust: one from this proxy's CA (the lab's CDN
            has one). Each tunnel's traffic is still a tap event (bytes each way
            and when; no paths or statuses); a fault that could match dooms it.
            Off: every byte is intercepted.
            """,
        )
        loader.add_option(
            "hub_http2_roles",
            str,
            "",
            """
            Roles (registry, auth, cdn; comma-separated) whose client connections speak
            HTTP/2 when the client offers it, even with mitmproxy's http2 option off
            (then everything else stays HTTP/1.1). E.g. "registry,auth": a mirror
            sends its many small registry requests over one connection, while
            intercepted CDN downloads stay HTTP/1.1 (cheaper per byte; a reset fault
            is a TCP reset). HTTP/2 clients meet reset faults as stream resets.
            """,
        )
        for problem in settle_deferred_options(loader.master.options, OPTIONS):
            log.error(problem)

    def configure(self, updated: set[str]) -> None:
        options = ctx.options
        if "hub_routes" in updated:
            self.routes = dict(_parsed("hub_routes", options.hub_routes, parse_routes))
        if updated & {"hub_control", "hub_control_token_file"}:
            path = options.hub_control_token_file
            token = _parsed("hub_control_token_file", path, read_token) if path else None
            _parsed("hub_control", options.hub_control, lambda text: parse_control_address(text, token=bool(token)))
            self.control_token = token
        if updated & {"hub_origins", "mode", "listen_port"}:
            origins = dict(_parsed("hub_origins", options.hub_origins, parse_origins))
            if "hub_origins" in updated:
                _parsed("hub_origins", options.hub_origins, lambda _: _check_listeners(origins, options))
            self.origins = origins
        if updated & {"hub_allow_any_host", "hub_allow_hosts"}:
            extra = _parsed("hub_allow_hosts", options.hub_allow_hosts, parse_host_globs)
            self.hosts = HostPolicy(options.hub_allow_any_host, extra)
        if "hub_tap_capacity" in updated:
            if options.hub_tap_capacity < 1:
                raise HubOptionsError(
                    f"Cannot use hub_tap_capacity option {options.hub_tap_capacity!r}: must be at least 1"
                )
            if options.hub_tap_capacity != self.tap.capacity:
                self.tap = EventTap(options.hub_tap_capacity)
        if "hub_passthrough" in updated:
            self.passthrough = bool(options.hub_passthrough)
        if "hub_http2_roles" in updated:
            self.http2_roles = _parsed("hub_http2_roles", options.hub_http2_roles, parse_roles)
        if "hub_faults" in updated:
            specs = _parsed("hub_faults", options.hub_faults, load_fault_specs)
            self.faults.clear()
            for spec in specs:
                self.faults.add(spec)

    async def running(self) -> None:
        self._quiet_shutdown = self._quiet_shutdown or quiet_shutdown()
        self._expiry_watch = asyncio.get_running_loop().create_task(self._watch_expiry())
        self._log_setup()
        address = parse_control_address(ctx.options.hub_control, token=self.control_token is not None)
        if address is None:
            return
        self.control = ControlServer(
            self.faults,
            lambda: self.tap,
            self.requests_in_flight,
            held=self.requests_held,
            metrics=self.metrics,
            token=lambda: self.control_token,
        )
        try:
            port = self.control.start(*address)
        except OSError as err:
            # A lab without its control API cannot be driven: crash visibly, not half-working.
            log.error(f"hub-chaos: cannot listen on {ctx.options.hub_control}: {err}")
            self.control = None
            ctx.master.shutdown()
            return
        if ctx.options.hub_control_portfile:
            _write_atomically(Path(ctx.options.hub_control_portfile), f"{port}\n")
        guard = "bearer token required" if self.control_token else "loopback only, no token"
        log.log(ALERT, f"hub-chaos: control API on http://{_hostport(address[0], port)} ({guard})")

    async def done(self) -> None:
        if self._expiry_watch is not None:
            self._expiry_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_watch
            self._expiry_watch = None
        if self.control is not None:
            await self.control.stop()
            self.control = None

    async def _watch_expiry(self) -> None:
        # Faults expire without a call; looking at them now and then makes the
        # expiry (and its log line) happen on time rather than at the next request.
        while True:
            following = self.faults.next_expiry()
            wait = 1.0 if following is None else following - time.time()
            await asyncio.sleep(min(max(wait, 0.05), 1.0))
            self.faults.prune()

    def _log_setup(self) -> None:
        # What a person reading proxy.log needs to know about this run's proxy.
        if self.routes:
            routes = ", ".join(f"{role}={upstream}" for role, upstream in self.routes.items())
            log.log(ALERT, f"hub-chaos: routes {routes}")
        else:
            log.warning("hub-chaos: LIVE mode (no hub_routes): requests go to the real Docker Hub")
        if self.origins:
            origins = ", ".join(f"{port}={origin}" for port, origin in sorted(self.origins.items()))
            log.log(ALERT, f"hub-chaos: origins by listener port: {origins}")
        if self.hosts.any_host:
            log.warning("hub-chaos: hub_allow_any_host: forwarding requests for any host")
        relayed = [role for role in PASSTHROUGH_ROLES if getattr(self.routes.get(role), "scheme", None) == "https"]
        if self.passthrough and relayed:
            log.log(ALERT, f"hub-chaos: pass-through: {', '.join(relayed)} tunnels relayed unopened while no fault could match them")

    def requests_in_flight(self) -> int:
        """Requests seen and not yet in the tap: intercepted flows, and relayed
        tunnels in the middle of an exchange."""
        return len(self.in_flight) + self.tunnels.busy()

    def requests_held(self) -> list[dict[str, Any]]:
        """What `requests_in_flight` counts, each described (GET /inflight):
        oldest first, so a report can say which request a fault held open."""
        now = time.time()
        held = [in_flight_summary(flow, now) for flow in self.in_flight.values()]
        held += [busy_tunnel_summary(tunnel, now) for tunnel in self.tunnels.busy_tunnels()]
        return sorted(held, key=lambda summary: summary["ts"])

    def _fault_changed(self, change: str, spec: FaultSpec) -> None:
        log.log(ALERT, describe_change(change, spec, time.time()))
        if change in (ADDED, REPLACED) and self.tunnels.open:
            match = spec.match
            # From now on the fault applies: tunnels it could match must not carry a new request.
            for tunnel, client_conn in self.tunnels.doom(
                lambda t: match.may_match(t.host, classify(t.host, "GET", "/"), t.client_ip, t.origin)
            ):
                shutdown_connection(client_conn)

    def tls_start_client(self, data: tls.TlsData) -> None:
        # Runs before mitmproxy's TlsConfig, whose ALPN choice takes client.alpn when it is set.
        if not self.http2_roles or ctx.options.http2:
            return
        client, address = data.context.client, data.context.server.address
        offered = b"h2" in (client.alpn_offers or ())
        if client.alpn is None and offered and address and role_of(address[0]) in self.http2_roles:
            client.alpn = b"h2"

    def tls_start_server(self, data: tls.TlsData) -> None:
        # An HTTP/2 client (hub_http2_roles) keeps HTTP/2 upstream when the upstream offers it:
        # mitmproxy would otherwise open an upstream connection per request.
        if not self.http2_roles or ctx.options.http2:
            return
        if data.context.client.alpn == b"h2" and not data.conn.alpn_offers:
            data.conn.alpn_offers = (b"h2", b"http/1.1")

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        # Runs before mitmproxy's NextLayer addon (scripts load ahead of it), so
        # nothing has been built for this tunnel yet.
        if nextlayer.layer is not None or not self.passthrough:
            return
        context = nextlayer.context
        stream = context.layers[-1] if context.layers else None
        if not isinstance(stream, HttpStream) or stream.flow is None:
            return
        flow = stream.flow
        endpoint: Endpoint | None = flow.metadata.get(ENDPOINT)
        if flow.request.method != "CONNECT" or endpoint is None or endpoint.role not in PASSTHROUGH_ROLES:
            return
        upstream = self.routes.get(endpoint.role)
        # Only an upstream that speaks TLS for the host's name can take the client's TLS as it is.
        if upstream is None or upstream.scheme != "https" or context.server.timestamp_start is not None:
            return
        if not starts_like_tls_record(nextlayer.data_client()):
            return
        host, origin, client = flow.metadata[TARGET_HOST], flow.metadata[ORIGIN], client_address(flow)
        if self.faults.may_match(host, classify(host, "GET", "/"), client, origin):
            return
        peer = flow.client_conn.peername
        tunnel = Tunnel(
            id=self.tunnels.next_id(), host=host, port=flow.request.port, role=endpoint.role, origin=origin,
            client=_hostport(*peer[:2]) if peer else None, client_ip=client, upstream=upstream, opened=time.time(),
        )
        self.tunnels.add(tunnel, flow.client_conn)
        nextlayer.layer = PassThroughLayer(context, tunnel, self._record_period, self._tunnel_ended,
                                           metrics=self.metrics)

    def _record_period(self, tunnel: Tunnel, period: Period) -> None:
        kind = classify(tunnel.host, "GET", "/").kind
        event = self.tap.append(tunnel_event(tunnel, period, kind=kind))
        self.metrics.observe(event, (), ())

    def _tunnel_ended(self, tunnel: Tunnel) -> None:
        self.tunnels.discard(tunnel)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        host = flow.request.host
        if not self.hosts.allows(host):
            self._refuse_host(flow, host)
            return
        endpoint = classify(host, "CONNECT", "")
        origin = origin_of(flow, self.origins)
        flow.metadata[TARGET_HOST] = host
        flow.metadata[ENDPOINT] = endpoint
        flow.metadata[ORIGIN] = origin
        fired = self.faults.fire(host, "CONNECT", endpoint, client_address(flow), origin=origin, connect=True)
        if fired:
            flow.metadata[FIRED] = fired
            run_hook(fired, "on_connect", flow)
            if flow.response is not None and flow.response.status_code >= 300:
                # Refused: an event (http_connect_error) like any request's.
                self.in_flight[flow.id] = flow
                self.metrics.started.inc()

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        # Only refusals are worth an event: a tunnel that opens is not a request.
        if ENDPOINT in flow.metadata:
            self._record(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response or flow.error or not flow.live:
            return None
        request = flow.request
        # request.host is where the client (or reverse mode) aims; the Host header
        # may say anything, and routing decisions must not follow it.
        if not self.hosts.allows(request.host):
            self._refuse_host(flow, request.host)
            return None
        endpoint = classify(request.host, request.method, request.path)
        origin = origin_of(flow, self.origins)
        flow.metadata[TARGET_HOST] = request.host
        flow.metadata[ENDPOINT] = endpoint
        flow.metadata[ORIGIN] = origin
        self.in_flight[flow.id] = flow
        self.metrics.started.inc()
        fired = self.faults.fire(request.host, request.method, endpoint, client_address(flow), origin=origin)
        if fired:
            flow.metadata[FIRED] = fired
            run_hook(fired, "on_request", flow)
            if flow.response or flow.error:
                return None
        upstream = self.routes.get(endpoint.role)
        if upstream is not None:
            apply_route(flow, upstream)
        if fired and needs_hold(fired):
            return hold_request(fired, flow)
        return None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.error or not flow.live or ENDPOINT not in flow.metadata:
            return
        fired: list[ActiveFault] | None = flow.metadata.get(FIRED)
        if fired:
            run_hook(fired, "on_response_headers", flow)
            if flow.error:
                return
        filters = body_filters(fired, flow) if fired else None
        earlier = flow.response.stream
        if not filters and not earlier and _small(flow):
            # mitmproxy reads it whole (its bytes are counted at the end): no stream
            # callable, and none of the log lines mitmproxy writes for each stream.
            return
        counter = ByteCounter()
        flow.metadata[COUNTER] = counter
        stream: Callable[[bytes], bytes] = counter
        if filters:
            chain = FilterChain(filters, counter, flow)
            flow.metadata[FILTERS] = chain
            stream = chain
        # An addon listed before us (CdnRedirect) may have replaced the response
        # and set its own stream: its output is what the client would get.
        flow.response.stream = _Then(earlier, stream) if callable(earlier) else stream

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if ENDPOINT not in flow.metadata:
            return None
        chain: FilterChain | None = flow.metadata.get(FILTERS)
        if chain is not None:
            if chain.ends_response and flow.error is None and flow.live:
                return self._finish_then_record(flow, chain)
            chain.close()
        self._record(flow)
        return None

    async def _finish_then_record(self, flow: http.HTTPFlow, chain: FilterChain) -> None:
        try:
            await chain.finish(flow)
        finally:
            chain.close()
            self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        chain: FilterChain | None = flow.metadata.get(FILTERS)
        if chain is not None:
            chain.close()
        if ENDPOINT in flow.metadata and flow.request.method != "CONNECT":
            self._record(flow)

    def _refuse_host(self, flow: http.HTTPFlow, host: str) -> None:
        flow.response = http.Response.make(
            403,
            f"hub-chaos: {host} is not a Docker Hub host; this proxy forwards only registry-1.docker.io,"
            " auth.docker.io, *.cloudflare.docker.com and hub_allow_hosts"
            " (--set hub_allow_any_host=true forwards any host)\n",
            {"Content-Type": "text/plain", "Connection": "close"},
        )
        self.metrics.refused_hosts.inc()
        key = host.lower()
        if key not in self._refused_hosts and len(self._refused_hosts) < MAX_LOGGED_HOSTS:
            self._refused_hosts.add(key)
            log.warning(
                f"hub-chaos: refused {flow.request.method} for {quoted(host)} from {client_address(flow)}:"
                " not a Docker Hub host (logged once per host; hub_allow_hosts or hub_allow_any_host forward it)"
            )

    def _record(self, flow: http.HTTPFlow) -> None:
        self.in_flight.pop(flow.id, None)
        event = self.tap.append(tap_event(flow, time.time()))
        fired: list[ActiveFault] = flow.metadata.get(FIRED) or []
        self.metrics.observe(event, [(a.spec.name, a.spec.kind) for a in fired], flow.metadata.get(FAULTS, []))


def tap_event(flow: http.HTTPFlow, now: float) -> dict[str, Any]:
    """The tap event describing `flow` as the client experienced it, ended at `now`."""
    counter: ByteCounter | None = flow.metadata.get(COUNTER)
    response = flow.response
    sent = 0
    if response is not None and not flow.error:
        sent = (counter.count if counter else 0) + len(response.raw_content or b"")
    elif counter is not None:
        sent = counter.count  # the client got part of a body before the error
    started = flow.request.timestamp_start
    peer = flow.client_conn.peername
    return {
        "ts": started,
        "ts_end": now,
        **_what_was_asked(flow),
        "path": flow.request.path,
        "status": response.status_code if response is not None and not flow.error else None,
        "bytes": sent,
        "fault": ",".join(flow.metadata.get(FAULTS, [])) or None,
        "error": flow.error.msg if flow.error else None,
        "latency_ms": round((now - started) * 1000, 3),
        "client": _hostport(*peer[:2]) if peer else None,
        "origin": flow.metadata[ORIGIN],
        "tunnel": None,
    }


def _what_was_asked(flow: http.HTTPFlow) -> dict[str, Any]:
    """The fields a tap event and an /inflight entry share: host, the endpoint, the method."""
    endpoint: Endpoint = flow.metadata[ENDPOINT]
    return {
        "host": flow.metadata[TARGET_HOST],
        "role": endpoint.role,
        "kind": endpoint.kind,
        "repository": endpoint.repository,
        "reference": endpoint.reference,
        "method": flow.request.method,
    }


def in_flight_summary(flow: http.HTTPFlow, now: float) -> dict[str, Any]:
    """A request seen and not yet ended, as GET /inflight lists it: who asked
    for what, since when, and which faults picked it (a hold acts before any
    answer, so `faults` names the faults that fired, not only those that acted)."""
    started = flow.request.timestamp_start
    fired: list[ActiveFault] = flow.metadata.get(FIRED) or []
    return {
        "ts": started,
        "held_s": round(max(0.0, now - started), 3),
        **_what_was_asked(flow),
        "origin": flow.metadata[ORIGIN],
        "faults": [active.spec.name for active in fired],
        "answered": flow.response is not None,
    }


def busy_tunnel_summary(tunnel: Tunnel, now: float) -> dict[str, Any]:
    """A relayed tunnel in the middle of an exchange, described like a request
    (what is inside it is encrypted: a CDN blob download, no repository)."""
    with tunnel.lock:  # the relay threads move the period along
        period, answered = tunnel.period, tunnel.bytes_down > 0
    started = period.started if period is not None else tunnel.opened
    return {
        "ts": started,
        "held_s": round(max(0.0, now - started), 3),
        "host": tunnel.host,
        "role": tunnel.role,
        "kind": "blob",
        "repository": None,
        "reference": None,
        "method": "CONNECT",
        "origin": tunnel.origin,
        "faults": [],
        "answered": answered,
    }


SMALL_BODY_BYTES = 64 * 1024
"""Responses up to this size (by Content-Length) with no body fault are read
whole instead of streamed: one read, no per-chunk call."""


def _small(flow: http.HTTPFlow) -> bool:
    if not has_body(flow):
        return True
    size = content_length(flow)
    return size is not None and size <= SMALL_BODY_BYTES


def client_address(flow: http.HTTPFlow) -> str | None:
    """The client's IP address as faults match it (IPv4-mapped IPv6 as plain IPv4)."""
    peer = flow.client_conn.peername
    if not peer:
        return None
    host = peer[0]
    return host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host


def load_fault_specs(value: str) -> list[FaultSpec]:
    """Parse hub_faults: inline JSON/YAML list text, or a file path. Raises ValueError."""
    text = value.strip()
    if not text:
        return []
    if not (text.startswith(("[", "-")) or "\n" in text):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as err:  # its strerror only: the value is quoted (or not) by the caller
            raise ValueError(f"not a fault list and not a readable file: {err.strerror or type(err).__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        # PyYAML's own text quotes the offending line, which may hold a secret: say where, not what.
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"not JSON/YAML{where}: {getattr(err, 'problem', None) or type(err).__name__}") from None
    except (ValueError, RecursionError) as err:  # an integer too long to convert; nesting too deep
        raise ValueError(f"not a fault list: {type(err).__name__}") from None
    if not isinstance(data, list):
        raise ValueError(f"expected a list of faults, got {type(data).__name__}")
    specs = []
    for index, item in enumerate(data):
        try:
            specs.append(parse_fault_spec(item))
        except FaultSpecError as err:
            raise ValueError(f"fault {index + 1}: {err}") from None
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate fault names: {', '.join(duplicates)}")
    return specs


SECRET_BEARING_OPTIONS = ("hub_faults",)
"""Options whose inline value may hold a scenario's words (an error message):
their errors name the value's length, never quote it."""


def _parsed(option: str, value: Any, parse: Callable[[Any], Any]) -> Any:
    """parse(value), or HubOptionsError quoting the option's value and the reason."""
    try:
        return parse(value)
    except ValueError as err:
        shown = quoted(value, 200)
        if option in SECRET_BEARING_OPTIONS and isinstance(value, str) and not _looks_like_a_path(value):
            shown = f"(inline, {len(value)} characters)"
        raise HubOptionsError(f"Cannot use {option} option {shown}: {err}") from None


def _looks_like_a_path(value: str) -> bool:
    """A file name, worth quoting back; not fault text (brackets, braces,
    quotes, a "key: value", a line break), which may hold a scenario's words."""
    text = value.strip()
    return bool(text) and not any(mark in text for mark in ("[", "{", '"', "'", ": ", "\n")) and not text.startswith("-")


def _check_listeners(origins: dict[int, str], options: Any) -> None:
    """Every port hub_origins names must be one this proxy listens on."""
    ports = set()
    for spec in options.mode:
        try:
            ports.add(ProxyMode.parse(spec).listen_port(options.listen_port))
        except ValueError:
            return  # mitmproxy rejects a bad mode itself
    for port, origin in origins.items():
        if port not in ports:
            listening = ", ".join(str(p) for p in sorted(p for p in ports if p is not None)) or "none"
            raise ValueError(
                f"port {port} of {origin} is not a listener of this proxy (listening on: {listening};"
                " add --mode regular@PORT for each origin)"
            )


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for this file; they must never see it half-written.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
