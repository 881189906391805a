"""The control API: faults and the event tap over JSON/HTTP on loopback.

It runs with tornado on mitmproxy's own asyncio loop, so handlers touch the
FaultSet and EventTap from the same thread as the proxy hooks: no locks, and a
fault added here applies to the very next request. It has no authentication,
hence loopback only, JSON bodies only (a browser cannot send those cross-site
without a preflight we never grant) and Host headers naming loopback (DNS
rebinding).

    GET    /healthz                      {"ok": true, "faults": n, "last_event": id, "in_flight": n}
    GET    /faults                       {"faults": [spec, ...]}
    POST   /faults                       spec -> 201 spec | 400 | 409
    DELETE /faults                       -> {"removed": n}
    GET    /faults/<name>                -> spec | 404
    PUT    /faults/<name>                spec -> spec | 400 | 404
    DELETE /faults/<name>                -> 204 | 404
    GET    /events?after=<id>&limit=<n>  {"events": [...], "next": id, "dropped": n}
"""

from __future__ import annotations

import ipaddress
import json
import socket
import typing
from typing import Any, Callable

import tornado.httpserver
import tornado.netutil
import tornado.web

from chaos.faults.faultset import DuplicateFault, FaultSet, UnknownFault
from chaos.faults.spec import FaultSpecError, parse_fault_spec
from chaos.proxy.tap import EventTap

MAX_EVENTS_PER_PAGE = 10000


def parse_control_address(text: str) -> tuple[str, int] | None:
    """"127.0.0.1:5380" -> ("127.0.0.1", 5380); "" -> None (API disabled).

    Only loopback IP literals: the API is unauthenticated. Port 0 picks a free port.
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
        raise ValueError(f"host {host!r} must be a loopback IP address") from None
    if not address.is_loopback:
        raise ValueError(f"host {host!r} is not loopback; the control API has no authentication")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} must be a number from 0 to 65535")
    return host, int(port_text)


class ControlServer:
    """Serves the API for one FaultSet and (the current) EventTap."""

    def __init__(self, faults: FaultSet, tap: Callable[[], EventTap], in_flight: Callable[[], int] = lambda: 0):
        self._app = tornado.web.Application(
            [
                (r"/healthz", _Health),
                (r"/faults", _Faults),
                (r"/faults/([^/]+)", _Fault),
                (r"/events", _Events),
            ],
            default_handler_class=_NotFound,
            faults=faults,
            tap=tap,
            in_flight=in_flight,
        )
        self._server: tornado.httpserver.HTTPServer | None = None
        self.port: int | None = None

    def start(self, host: str, port: int) -> int:
        """Listen on host:port (port 0: a free one) on the running loop; return the port.

        Raises OSError when the address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sockets = tornado.netutil.bind_sockets(port, address=host, family=family)
        self._server = tornado.httpserver.HTTPServer(self._app)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None


class _Handler(tornado.web.RequestHandler):
    @property
    def faults(self) -> FaultSet:
        return self.settings["faults"]

    @property
    def tap(self) -> EventTap:
        return self.settings["tap"]()

    def prepare(self) -> None:
        hostname = self.request.host_name.strip("[]")
        if hostname != "localhost":
            try:
                if not ipaddress.ip_address(hostname).is_loopback:
                    raise ValueError
            except ValueError:
                self.fail(403, f"Host {self.request.host!r} is not loopback")

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
            message = f"internal error: {exc!r}"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def json_body(self) -> Any:
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/json":
            self.fail(415, "send the body as Content-Type: application/json")
        try:
            return json.loads(self.request.body or b"null")
        except ValueError as err:
            self.fail(400, f"body is not JSON: {err}")

    def spec_from_body(self, name: str | None = None):
        body = self.json_body()
        if name is not None and isinstance(body, dict):
            if body.setdefault("name", name) != name:
                self.fail(400, f"name: {body['name']!r} differs from the URL's {name!r}")
        try:
            return parse_fault_spec(body)
        except FaultSpecError as err:
            self.fail(400, str(err))


class _ApiError(tornado.web.HTTPError):
    """An HTTP error whose message the client sees as {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(status)
        self.message = message


class _NotFound(_Handler):
    def prepare(self) -> None:
        self.fail(404, f"no such endpoint: {self.request.method} {self.request.path}")


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
        removed = len(self.faults.specs())
        self.faults.clear()
        self.send({"removed": removed})


class _Fault(_Handler):
    def get(self, name: str) -> None:
        for spec in self.faults.specs():
            if spec.name == name:
                return self.send(spec.to_dict())
        self.fail(404, f"no fault named {name!r}")

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
        if not raw.isdigit():
            self.fail(400, f"{name}: expected a non-negative integer, got {raw!r}")
        return int(raw)
