"""The control API: faults, the event tap and metrics over JSON/HTTP.

It runs with tornado on mitmproxy's own asyncio loop, so handlers touch the
FaultSet and EventTap from the same thread as the proxy hooks: no locks, and a
fault added here applies to the very next request.

Who may call it: without a token it listens on loopback only, takes JSON
bodies only (a browser cannot send those cross-site without a preflight we
never grant) and Host headers naming loopback (DNS rebinding). With a token
(control_auth.py) it may listen anywhere, and every endpoint but /healthz
wants `Authorization: Bearer <token>` (401 without it). docs/control-api.md
documents every endpoint.

    GET    /healthz                      {"ok": true, "faults": n, "last_event": id, "in_flight": n}
    GET    /faults                       {"faults": [spec, ...]}
    POST   /faults                       spec -> 201 spec | 400 | 409
    DELETE /faults                       -> {"removed": n}
    GET    /faults/<name>                -> spec | 404
    PUT    /faults/<name>                spec -> spec | 400 | 404
    DELETE /faults/<name>                -> 204 | 404
    GET    /events?after=<id>&limit=<n>  {"events": [...], "next": id, "dropped": n}
    GET    /inflight                     {"requests": [...]}: those not yet in the tap, oldest first
    GET    /metrics                      Prometheus exposition (text or OpenMetrics)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import typing
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from chaos.errors import quoted
from chaos.faults.faultset import DuplicateFault, FaultSet, UnknownFault
from chaos.faults.spec import FaultSpec, FaultSpecError, parse_fault_spec
from chaos.proxy.control_auth import authorized
from chaos.proxy.metrics import ProxyMetrics
from chaos.proxy.tap import EventTap

log = logging.getLogger(__name__)

MAX_EVENTS_PER_PAGE = 10000
MAX_BODY_BYTES = 1024 * 1024
"""A fault spec is a few hundred bytes; anything near this is not one (413)."""
OPEN_PATHS = ("/healthz",)
"""Answered without the token: a liveness probe learns only counts."""


def parse_control_address(text: str, *, token: bool = False) -> tuple[str, int] | None:
    """"127.0.0.1:5380" -> ("127.0.0.1", 5380); "" -> None (API disabled).

    IP literals only. Without a token, loopback only: the API would otherwise
    answer anyone. Port 0 picks a free port. Raises ValueError saying why not.
    """
    text = text.strip()
    if not text:
        return None
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, for example 127.0.0.1:5380")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"host {quoted(host)} must be an IP address: a loopback IP such as 127.0.0.1 (any IP with a token)"
        ) from None
    if not address.is_loopback and not token:
        raise ValueError(
            f"host {quoted(host)} is not loopback; the control API answers other hosts only"
            " with a token (set hub_control_token_file)"
        )
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {quoted(port_text)} must be a number from 0 to 65535")
    return host, int(port_text)


class ControlServer:
    """Serves the API for one FaultSet and (the current) EventTap.

    `token` is called for every request: the current token, or None for none
    (loopback only); so a token changed at run time applies at once.
    """

    def __init__(
        self,
        faults: FaultSet,
        tap: Callable[[], EventTap],
        in_flight: Callable[[], int] = lambda: 0,
        held: Callable[[], list[dict[str, Any]]] = list,
        metrics: ProxyMetrics | None = None,
        token: Callable[[], bytes | None] = lambda: None,
    ):
        self._app = tornado.web.Application(
            [
                (r"/healthz", _Health),
                (r"/faults", _Faults),
                (r"/faults/([^/]+)", _Fault),
                (r"/events", _Events),
                (r"/inflight", _InFlight),
                (r"/metrics", _Metrics),
            ],
            default_handler_class=_NotFound,
            faults=faults,
            tap=tap,
            in_flight=in_flight,
            held=held,
            metrics=metrics,
            token=token,
            # Ours instead of tornado's access log: one line per refused call, with the reason.
            log_function=_log_call,
        )
        self._server: tornado.httpserver.HTTPServer | None = None
        self.port: int | None = None

    def start(self, host: str, port: int) -> int:
        """Listen on host:port (port 0: a free one) on the running loop; return the port.

        Raises OSError when the address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sockets = tornado.netutil.bind_sockets(port, address=host, family=family)
        self._server = tornado.httpserver.HTTPServer(self._app, max_body_size=MAX_BODY_BYTES)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None


def _short(text: str, limit: int = 120) -> str:
    """Text from a request (a path, a parser's message quoting the body), cut for one line."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _log_call(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    if status < 400:
        return
    request = handler.request
    message = getattr(handler, "error_message", None) or handler._reason
    line = f"hub-chaos: control API: {request.method} {_short(request.uri)} -> {status} {message}"
    (log.error if status >= 500 else log.warning)(line)


class _Handler(tornado.web.RequestHandler):
    error_message: str | None = None

    @property
    def faults(self) -> FaultSet:
        return self.settings["faults"]

    @property
    def tap(self) -> EventTap:
        return self.settings["tap"]()

    def prepare(self) -> None:
        token = self.settings["token"]()
        if token is not None:
            if self.request.path not in OPEN_PATHS and not authorized(self.request.headers.get("Authorization"), token):
                self.fail(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
            return
        # No token: loopback only, and only for pages addressed to loopback.
        hostname = self.request.host_name.strip("[]")
        if hostname != "localhost":
            try:
                if not ipaddress.ip_address(hostname).is_loopback:
                    raise ValueError
            except ValueError:
                self.fail(403, f"Host {quoted(self.request.host)} is not loopback")

    def fail(self, status: int, message: str) -> typing.NoReturn:
        raise _ApiError(status, message)

    def send(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, _ApiError):
            message = exc.message
        elif isinstance(exc, tornado.web.HTTPError):
            message = self._reason
        else:
            message = f"internal error: {quoted(exc, 200)}"
        self.error_message = message
        if status_code == 401:
            # Set here: tornado clears the headers before it writes an error.
            self.set_header("WWW-Authenticate", 'Bearer realm="hub-chaos"')
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def json_body(self) -> Any:
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/json":
            self.fail(415, "send the body as Content-Type: application/json")
        try:
            return json.loads(self.request.body or b"null", parse_constant=_no_constants)
        except RecursionError:
            self.fail(400, "body is not a fault: nested too deeply")
        except ValueError as err:
            self.fail(400, f"body is not JSON: {_short(str(err))}")

    def spec_from_body(self, name: str | None = None) -> FaultSpec:
        body = self.json_body()
        if name is not None and isinstance(body, dict):
            if body.setdefault("name", name) != name:
                self.fail(400, f"name: {quoted(body['name'])} differs from the URL's {quoted(name)}")
        try:
            return parse_fault_spec(body)
        except FaultSpecError as err:
            self.fail(400, str(err))


def _no_constants(name: str) -> typing.NoReturn:
    # Python's json takes NaN and Infinity, which are not JSON and no fault can use.
    raise ValueError(f"{name} is not a JSON number")


class _ApiError(tornado.web.HTTPError):
    """An HTTP error whose message the client sees as {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(status)
        self.message = message


class _NotFound(_Handler):
    def prepare(self) -> None:
        super().prepare()
        self.fail(404, f"no such endpoint: {self.request.method} {_short(self.request.path)}")


class _Health(_Handler):
    def get(self) -> None:
        self.send({
            "ok": True,
            "faults": len(self.faults.specs()),
            "last_event": self.tap.last_id,
            # Requests seen but not yet in the tap: a reader wanting every event
            # a client caused waits for this to reach 0.
            "in_flight": self.settings["in_flight"](),
        })


class _InFlight(_Handler):
    def get(self) -> None:
        # What /healthz counts in in_flight, each described: a run names the
        # request a blackhole held open when its step ended.
        self.send({"requests": self.settings["held"]()})


class _Faults(_Handler):
    def get(self) -> None:
        self.send({"faults": [spec.to_dict() for spec in self.faults.specs()]})

    def post(self) -> None:
        spec = self.spec_from_body()
        try:
            self.faults.add(spec)
        except DuplicateFault as err:
            self.fail(409, str(err))
        self.send(spec.to_dict(), status=201)

    def delete(self) -> None:
        self.send({"removed": self.faults.clear()})


class _Fault(_Handler):
    def get(self, name: str) -> None:
        for spec in self.faults.specs():
            if spec.name == name:
                return self.send(spec.to_dict())
        self.fail(404, f"no fault named {quoted(name)}")

    def put(self, name: str) -> None:
        spec = self.spec_from_body(name)
        try:
            self.faults.replace(spec)
        except UnknownFault as err:
            self.fail(404, str(err))
        self.send(spec.to_dict())

    def delete(self, name: str) -> None:
        try:
            self.faults.remove(name)
        except UnknownFault as err:
            self.fail(404, str(err))
        self.set_status(204)
        self.finish()


class _Events(_Handler):
    def get(self) -> None:
        after = self._int_argument("after", 0)
        limit = min(self._int_argument("limit", 1000), MAX_EVENTS_PER_PAGE)
        try:
            page = self.tap.since(after, limit)
        except ValueError as err:
            self.fail(400, str(err))
        self.send({"events": page.events, "next": page.next, "dropped": page.dropped})

    def _int_argument(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, str(default))
        # At most 18 digits: a cursor is an event id, and int() of a huge string is slow.
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            self.fail(400, f"{name}: expected a non-negative integer, got {quoted(raw)}")
        return int(raw)


class _Metrics(_Handler):
    def get(self) -> None:
        metrics: ProxyMetrics | None = self.settings["metrics"]
        if metrics is None:
            self.fail(404, "no metrics on this control API")
        body, content_type = metrics.render(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.finish(body)
