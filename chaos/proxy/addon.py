"""HubChaos: the mitmproxy addon that routes Hub's host names to the lab, injects
faults and records every upstream-bound request in the event tap.

Hooks stay small; classification, routing, fault logic (chaos.faults) and
the API live in their own modules. Hook order for one request: requestheaders
(classify; the faults' triggers decide; on_request; route; hold_request) ->
responseheaders (on_response_headers; body filters chained before the counting
stream) -> response (filters' end-of-body actions; tap event) | error (tap
event). A CONNECT goes through http_connect (on_connect) and, when refused,
http_connect_error (tap event).

Waiting faults (latency, blackhole, stall) need async hooks: mitmproxy awaits
whatever a hook returns when it is awaitable, per flow, while other flows carry
on. So requestheaders and response stay plain functions and return a coroutine
only when an active fault must wait: requests without such a fault pay nothing.
(flow.intercept()/resume() would also pause a flow, but then our own tap event
and the addons after us would run before the wait ends, and anyone's "resume
all" would cut a blackhole short.) Without body filters the stream callable is
the bare ByteCounter: no per-chunk work is added when no fault acts on a body.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable

import yaml
from mitmproxy import ctx, exceptions, http

from chaos.faults.hooks import APPLIED, FilterChain, body_filters, hold_request, needs_hold, run_hook
from chaos.faults.faultset import ActiveFault, FaultSet
from chaos.faults.spec import FaultSpec, FaultSpecError, parse_fault_spec
from chaos.vocab.endpoints import Endpoint, classify
from chaos.proxy.control_api import ControlServer, parse_control_address
from chaos.proxy.routing import apply_route, parse_routes
from chaos.proxy.tap import EventTap

log = logging.getLogger(__name__)

# flow.metadata keys; namespaced so other addons' keys never collide.
ENDPOINT = "hub_chaos.endpoint"
TARGET_HOST = "hub_chaos.host"  # the host the client addressed, before routing
FAULTS = APPLIED  # names of faults that acted on this flow
COUNTER = "hub_chaos.counter"
FIRED = "hub_chaos.fired"  # the faults whose triggers picked this flow, in order
FILTERS = "hub_chaos.filters"  # the FilterChain streaming this flow's body


class ByteCounter:
    """A passthrough `response.stream` callable counting body bytes sent to the client.

    mitmproxy calls it synchronously for every chunk: it must never block.
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.count += len(chunk)
        return chunk


class HubChaos:
    def __init__(self) -> None:
        self.routes: dict = {}
        self.faults = FaultSet()
        self.tap = EventTap()
        self.control: ControlServer | None = None
        # Flows classified but not yet recorded (see /healthz in_flight).
        self.in_flight: set[str] = set()

    def load(self, loader: Any) -> None:
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
            Loopback HOST:PORT of the hub-chaos control API (faults and event tap).
            Port 0 picks a free port (see hub_control_portfile); empty disables the API.
            Read when the proxy starts.
            """,
        )
        loader.add_option(
            "hub_control_portfile",
            str,
            "",
            "If set, write the control API's bound port to this file once it listens.",
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

    def configure(self, updated: set[str]) -> None:
        options = ctx.options
        if "hub_routes" in updated:
            try:
                self.routes = dict(parse_routes(options.hub_routes))
            except ValueError as err:
                raise exceptions.OptionsError(
                    f"Cannot parse hub_routes option {options.hub_routes!r}: {err}"
                ) from err
        if "hub_control" in updated:
            try:
                parse_control_address(options.hub_control)
            except ValueError as err:
                raise exceptions.OptionsError(
                    f"Cannot parse hub_control option {options.hub_control!r}: {err}"
                ) from err
        if "hub_tap_capacity" in updated:
            if options.hub_tap_capacity < 1:
                raise exceptions.OptionsError(
                    f"Cannot use hub_tap_capacity option {options.hub_tap_capacity!r}: "
                    "must be at least 1"
                )
            if options.hub_tap_capacity != self.tap.capacity:
                self.tap = EventTap(options.hub_tap_capacity)
        if "hub_faults" in updated:
            try:
                specs = load_fault_specs(options.hub_faults)
            except (ValueError, FaultSpecError) as err:
                raise exceptions.OptionsError(
                    f"Cannot parse hub_faults option {options.hub_faults!r}: {err}"
                ) from err
            self.faults.clear()
            for spec in specs:
                self.faults.add(spec)

    async def running(self) -> None:
        address = parse_control_address(ctx.options.hub_control)
        if address is None:
            return
        self.control = ControlServer(self.faults, lambda: self.tap, lambda: len(self.in_flight))
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
        log.info(f"hub-chaos control API on http://{_hostport(address[0], port)}")

    async def done(self) -> None:
        if self.control is not None:
            await self.control.stop()
            self.control = None

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        host = flow.request.host
        endpoint = classify(host, "CONNECT", "")
        flow.metadata[TARGET_HOST] = host
        flow.metadata[ENDPOINT] = endpoint
        fired = self.faults.fire(host, "CONNECT", endpoint, client_address(flow), connect=True)
        if fired:
            run_hook(fired, "on_connect", flow)

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
        endpoint = classify(request.host, request.method, request.path)
        flow.metadata[TARGET_HOST] = request.host
        flow.metadata[ENDPOINT] = endpoint
        self.in_flight.add(flow.id)
        fired = self.faults.fire(request.host, request.method, endpoint, client_address(flow))
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
        counter = ByteCounter()
        flow.metadata[COUNTER] = counter
        filters = body_filters(fired, flow) if fired else None
        if filters:
            chain = FilterChain(filters, counter)
            flow.metadata[FILTERS] = chain
            flow.response.stream = chain
        else:
            flow.response.stream = counter

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

    def _record(self, flow: http.HTTPFlow) -> None:
        self.in_flight.discard(flow.id)
        self.tap.append(tap_event(flow, time.time()))


def tap_event(flow: http.HTTPFlow, now: float) -> dict[str, Any]:
    """The tap event describing `flow` as the client experienced it."""
    endpoint: Endpoint = flow.metadata[ENDPOINT]
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
        "host": flow.metadata[TARGET_HOST],
        "role": endpoint.role,
        "kind": endpoint.kind,
        "repository": endpoint.repository,
        "reference": endpoint.reference,
        "method": flow.request.method,
        "path": flow.request.path,
        "status": response.status_code if response is not None and not flow.error else None,
        "bytes": sent,
        "fault": ",".join(flow.metadata.get(FAULTS, [])) or None,
        "error": flow.error.msg if flow.error else None,
        "latency_ms": round((now - started) * 1000, 3),
        "client": _hostport(*peer[:2]) if peer else None,
    }


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
        except OSError as err:
            raise ValueError(f"not a fault list and not a readable file: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"not JSON/YAML: {err}") from None
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


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for this file; they must never see it half-written.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
