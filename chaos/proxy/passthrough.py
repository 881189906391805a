"""Pass-through: relay a tunnel's TLS unopened when no fault could act on it.

Docker Hub sends blob bytes from its CDN, so nearly every byte of a pull
crosses the CDN host, while no fault needs to see them unless it could match
that host. Decrypting and re-encrypting them costs mitmproxy's single thread
most of its time (docs/benchmarks.md). So, when a client opens a CONNECT
tunnel to a host whose role may pass through (the CDN), whose route is an
https:// upstream (it serves TLS itself, with a certificate the clients
trust: chaos.proxy.upstream_tls), and no active fault could match a request
on that host from that client (FaultSet.may_match), the addon's next_layer
hook puts a PassThroughLayer in place of mitmproxy's TLS interception: the
client's ClientHello and everything after it go to the upstream byte for
byte, and the client's TLS session ends at the upstream.

What the proxy can still say about such a tunnel is what it sees: who opened
it (client, origin), for which host, where it went, when bytes moved and how
many each way. Not methods, paths, statuses, repositories or digests. The tap
gets one event per *exchange period* of a tunnel (see Tunnel), so a step's
events hold the bytes its downloads moved even when a keep-alive tunnel
outlives the step; a period that is still moving bytes counts as a request in
flight, so a reader that waits for in_flight == 0 (the runner does) sees it.

Fault semantics are kept: a fault switched on applies to every request that
starts after the switch (the control API call returned). When a fault that
could match a tunnel's host is added, the tunnel is *doomed*: closed at once
when it is idle, otherwise as soon as it goes idle, or, if the client starts
a new request first (it speaks again after the upstream spoke), closed
instead of forwarding that request. Clients reopen a closed keep-alive
connection (Go retries a request on a reused connection that closed before
any answer), and the new tunnel is intercepted, so the fault sees the request.

The exchange boundaries rely on HTTP/1.1 without pipelining (a client speaks
only after the previous answer): the lab's CDN answers HTTP/1.1 only.

The bytes themselves: relayed through mitmproxy's layers, every 64 KB chunk
costs its single thread about a quarter of a millisecond of Python (0.5 CPU s
per 128 MB, docs/benchmarks.md), nearly what interception costs. So once the
client's ClientHello has gone upstream, the tunnel's two sockets are handed
to a SpliceRelay: mitmproxy stops reading them (pause_reading; its layer stays
in place for the clock ticks and the final close), and two threads move the
bytes with splice(2), socket to pipe to socket, never through Python's
memory; each chunk's size and time are still told to the Tunnel first, so a
doomed tunnel still closes instead of forwarding a new request. Where that
cannot be done (no splice, bytes already waiting in mitmproxy's buffers), the
layer keeps relaying itself.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.utils import expect

from chaos.faults.transports import idle_stream
from chaos.proxy.routing import Upstream

log = logging.getLogger(__name__)

PASSTHROUGH_ROLES = ("cdn",)
"""Roles whose tunnels may be relayed unopened. The registry and auth.docker.io
are always intercepted: CdnRedirect answers the registry's blob GETs, and their
small requests are where the faults and the tap matter most."""

QUIET_S = 0.2
"""A tunnel whose upstream spoke last and has been silent this long has answered
everything its client asked: the exchange period ends and its tap event is written."""

TICK_S = 0.05
"""How often an open tunnel looks at the clock (period ends, doomed idle tunnels)."""

CLIENT, UPSTREAM = "client", "upstream"

HANDSHAKE_BYTES = 16 * 1024
"""More than a TLS server sends before its first answer (its handshake flight,
certificates included, and its session tickets: a few KB): an upstream that
sent more has answered a request."""
HANDSHAKE_CLIENT_TURNS = 2
"""A TLS 1.3 client's turns in its handshake: the ClientHello, then its Finished
(and, sent at once after it, its first request). A client that speaks again
after the upstream has, past these, is sending a new request."""



@dataclass
class Period:
    """A stretch of a tunnel's traffic: from the first byte after a quiet spell
    until the upstream has been silent QUIET_S after speaking, or the tunnel closes."""

    started: float
    last: float
    bytes_up: int = 0  # client -> upstream
    bytes_down: int = 0  # upstream -> client


@dataclass
class Tunnel:
    """The bookkeeping of one relayed tunnel, free of mitmproxy: what the layer
    tells it (bytes, time, close) and what it answers (forward or close; the
    periods that ended)."""

    id: int
    host: str  # as the client addressed it (CONNECT)
    port: int
    role: str
    origin: str
    client: str | None  # "host:port" of the peer
    client_ip: str | None
    upstream: Upstream
    opened: float
    turn: str | None = None  # who sent the last bytes: CLIENT or UPSTREAM
    period: Period | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    exchanges: int = 0  # periods that ended with an answer gone quiet (tick)
    client_turns: int = 0  # times the client spoke after the upstream (or first)
    draining: bool = False  # the upstream's bytes are being written to the client (spliced)
    periods: int = 0  # periods reported so far
    doomed: bool = False
    closed: bool = False
    error: str | None = None
    # The relay threads and the event loop both update it: every method below runs under it.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Busy from the CONNECT on: its client is about to send its first
        # request, which began before any fault switched on meanwhile, so a
        # new tunnel is never closed as idle before it carried one.
        self.period = Period(started=self.opened, last=self.opened)

    @property
    def busy(self) -> bool:
        """A period is open: bytes moved recently, or the client awaits an answer."""
        return self.period is not None

    @property
    def idle(self) -> bool:
        return self.period is None and not self.closed

    def client_data(self, size: int, now: float) -> bool:
        """The client sent `size` bytes; False when they must not be forwarded
        (nor counted): the tunnel is closed, or doomed and the client starts a
        new request after its handshake. Encrypted, the TLS handshake's turns
        look like requests and answers: the handshake is over once a period
        ended, the upstream sent more than a handshake's worth
        (HANDSHAKE_BYTES), or the client had its two handshake turns
        (ClientHello; Finished, with the first request when it sends it at
        once). The first request, begun with the CONNECT, goes through."""
        if self.closed:
            return False
        if self.turn != CLIENT:
            if self.doomed and self.turn == UPSTREAM and self._handshake_over():
                return False
            self.client_turns += 1
        self._count(size, 0, now)
        self.turn = CLIENT
        return True

    def _handshake_over(self) -> bool:
        return bool(self.exchanges) or self.bytes_down > HANDSHAKE_BYTES or self.client_turns >= HANDSHAKE_CLIENT_TURNS

    def upstream_sending(self, now: float) -> bool:
        """The upstream's next bytes are about to be written to the client
        (spliced: counted once delivered, by upstream_data). It has the turn
        from now on, so the client's next request is a new exchange, and the
        period cannot end while they drain. False when the tunnel is closed."""
        if self.closed:
            return False
        if self.period is None:
            self.period = Period(started=now, last=now)
        self.period.last = now
        self.turn = UPSTREAM
        self.draining = True
        return True

    def upstream_data(self, size: int, now: float) -> bool:
        """The upstream sent `size` bytes, delivered to the client; False
        (not counted) when the tunnel was closed meanwhile."""
        self.draining = False
        if self.closed:
            return False
        if size:
            self._count(0, size, now)
        self.turn = UPSTREAM
        return True

    def _count(self, up: int, down: int, now: float) -> None:
        if self.period is None:
            self.period = Period(started=now, last=now)
        period = self.period
        period.bytes_up += up
        period.bytes_down += down
        period.last = now
        self.bytes_up += up
        self.bytes_down += down

    def tick(self, now: float) -> Period | None:
        """The period that ended by `now` (the upstream answered and went quiet), if any."""
        period = self.period
        if period is None or self.draining or self.turn != UPSTREAM or now - period.last < QUIET_S:
            return None
        self.period = None
        self.exchanges += 1
        return period

    def close(self, now: float, error: str | None = None) -> Period | None:
        """The tunnel ended; the period to report with it, if any: the open one
        when the upstream said something in it, or (when the upstream never
        said a thing) one saying so. Bytes a client sends after the last answer
        (a TLS close alert) are not worth an event of their own."""
        if self.closed:
            return None
        self.closed = True
        self.error = self.error or error
        period, self.period = self.period, None
        if period is not None and period.bytes_down:
            return period
        if self.bytes_down == 0:
            self.error = self.error or "closed before the upstream sent a byte"
            return period or Period(started=self.opened, last=now)
        return None


def tunnel_event(tunnel: Tunnel, period: Period, *, kind: str) -> dict[str, Any]:
    """The tap event of one period (chaos.proxy.tap.EVENT_FIELDS), shaped as a
    proxy's log shows a CONNECT tunnel: method CONNECT, path host:port, status
    200 (the tunnel carried an answer) or None (the upstream never answered)."""
    answered = period.bytes_down > 0
    return {
        "ts": period.started,
        "ts_end": period.last,
        "host": tunnel.host,
        "role": tunnel.role,
        "kind": kind,
        "repository": None,
        "reference": None,
        "method": "CONNECT",
        "path": f"{tunnel.host}:{tunnel.port}",
        "status": 200 if answered else None,
        "bytes": period.bytes_down,
        "fault": None,
        # A relay that failed (a CDN reset mid-blob) says so on the tunnel's last period.
        "error": tunnel.error if tunnel.closed or not answered else None,
        "latency_ms": round((period.last - period.started) * 1000, 3),
        "client": tunnel.client,
        "origin": tunnel.origin,
        "tunnel": {"id": tunnel.id, "bytes_up": period.bytes_up, "closed": tunnel.closed},
    }


@dataclass
class Tunnels:
    """The open relayed tunnels: how many are busy (requests in flight), and
    dooming those a new fault could match."""

    clock: Callable[[], float] = time.time
    open: dict[int, tuple[Tunnel, Any]] = field(default_factory=dict)  # id -> (tunnel, its client Connection)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, tunnel: Tunnel, client_conn: Any) -> None:
        self.open[tunnel.id] = (tunnel, client_conn)

    def discard(self, tunnel: Tunnel) -> None:
        self.open.pop(tunnel.id, None)

    def busy(self) -> int:
        return sum(1 for tunnel, _ in self.open.values() if tunnel.busy)

    def busy_tunnels(self) -> list[Tunnel]:
        return [tunnel for tunnel, _ in list(self.open.values()) if tunnel.busy]

    def doom(self, could_match: Callable[[Tunnel], bool]) -> list[tuple[Tunnel, Any]]:
        """Doom every open tunnel `could_match`; return the idle ones among
        them (to close now) with their client connections."""
        idle = []
        for tunnel, client_conn in list(self.open.values()):
            if could_match(tunnel):
                with tunnel.lock:  # the relay threads read doomed and move the period
                    if tunnel.closed:
                        continue
                    tunnel.doomed = True
                    if tunnel.idle:
                        idle.append((tunnel, client_conn))
        return idle


Report = Callable[[Tunnel, Period], None]


class PassThroughLayer(layer.Layer):
    """mitmproxy's TCPLayer, counting: relays a CONNECT tunnel's bytes to the
    upstream the tunnel's host is routed to, reports each period (`report`)
    and closes the tunnel when doomed (see Tunnel)."""

    def __init__(self, context: Any, tunnel: Tunnel, report: Report, on_end: Callable[[Tunnel], None],
                 *, metrics: Any = None, splice: bool = True, clock: Callable[[], float] = time.time):
        """report(tunnel, period): a period ended; on_end(tunnel): the tunnel closed.
        metrics: the proxy's ProxyMetrics (bytes counted as they pass, apart
        from the tap; tunnels by relay). splice: hand the sockets to a
        SpliceRelay once the ClientHello went upstream (when possible)."""
        super().__init__(context)
        self.tunnel = tunnel
        self.report = report
        self.on_end = on_end
        self.clock = clock
        self.metrics = metrics
        self.counted = metrics.passthrough_bytes if metrics is not None else None
        self._up = self.counted.labels("up") if self.counted is not None else None
        self._down = self.counted.labels("down") if self.counted is not None else None
        self._try_splice: bool | None = splice and SPLICE  # None once decided
        self.spliced: SpliceRelay | None = None

    @expect(events.Start)
    def start(self, _: events.Event) -> layer.CommandGenerator[None]:
        server = self.context.server
        # The client's TLS ends at the upstream, which serves the host's name itself.
        server.address = (self.tunnel.upstream.host, self.tunnel.upstream.port)
        err = yield commands.OpenConnection(server)
        if err:
            self.tunnel.error = f"cannot reach {self.tunnel.upstream}: {err}"
            yield from self._end()
            return
        self._handle_event = self.relay
        yield commands.RequestWakeup(TICK_S)

    _handle_event = start

    @expect(events.Event)
    def relay(self, event: events.Event) -> layer.CommandGenerator[None]:
        tunnel = self.tunnel
        if isinstance(event, events.DataReceived):
            if event.connection == self.context.client:
                with tunnel.lock:
                    forward = tunnel.client_data(len(event.data), self.clock())
                if not forward:
                    yield from self._end()  # doomed: this request must meet the fault
                    return
                if self._up is not None:
                    self._up.inc(len(event.data))
                yield commands.SendData(self.context.server, event.data)
                if self._try_splice is not None:
                    # The ClientHello is on its way (the command above has been carried
                    # out by now); the rest can go around mitmproxy.
                    self.spliced = SpliceRelay.take_over(self) if self._try_splice else None
                    self._try_splice = None
                    if self.metrics is not None:
                        self.metrics.tunnels.labels("splice" if self.spliced else "proxy").inc()
            else:
                with tunnel.lock:
                    counted = tunnel.upstream_data(len(event.data), self.clock())
                if counted and self._down is not None:
                    self._down.inc(len(event.data))
                yield commands.SendData(self.context.client, event.data)
        elif isinstance(event, events.ConnectionClosed):
            # TLS has no use for half-closed connections: one side gone ends the tunnel.
            yield from self._end()
        elif isinstance(event, events.Wakeup):
            with tunnel.lock:
                period = tunnel.tick(self.clock())
                ending = tunnel.doomed and tunnel.idle
            if period is not None:
                self._report(period)
            if ending:
                yield from self._end()
                return
            yield commands.RequestWakeup(TICK_S)

    def _end(self) -> layer.CommandGenerator[None]:
        self._handle_event = self.done
        if self.spliced is not None:
            self.spliced.stop()  # the sockets live on in the relay until it lets go: shut them down first
        for connection in (self.context.server, self.context.client):
            # Half-closed ones too: mitmproxy keeps a connection whose peer left open for
            # writing (and its whole connection handler alive) until a layer closes it.
            if connection.state is not ConnectionState.CLOSED:
                yield commands.CloseConnection(connection)
        with self.tunnel.lock:
            period = self.tunnel.close(self.clock())
        if period is not None:
            self._report(period)
        self.on_end(self.tunnel)

    def _report(self, period: Period) -> None:
        self.tunnel.periods += 1
        self.report(self.tunnel, period)

    @expect(events.Event)
    def done(self, _: events.Event) -> layer.CommandGenerator[None]:
        yield from ()


SPLICE = hasattr(os, "splice") and hasattr(select, "poll")
PIPE_BYTES = 1 << 20  # splice(2) moves at most a pipe's capacity at a time
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
POLL_MS = 1000  # every wait for a socket looks up this often (a stop, the idle deadline)
IDLE_TIMEOUT_S = 600.0
"""A spliced tunnel with no byte either way for this long is closed, as mitmproxy
closes its own idle connections (its layer's clock ticks would otherwise keep
such a tunnel, two threads and its sockets, for ever)."""


class SpliceRelay:
    """Moves a relayed tunnel's bytes with splice(2), one thread per direction,
    telling the Tunnel of every chunk before it goes on (and stopping when the
    Tunnel says a doomed tunnel must not forward it).

    The sockets are duplicates of mitmproxy's, which stops reading its own
    (pause_reading) for as long as the relay runs. When either side closes, or
    stop() is called (from any thread), both sockets are shut down, the threads
    end, and mitmproxy reads again: it finds them closed and tears the tunnel
    down as if the peer had left (the layer then reports the last period).
    """

    def __init__(self, tunnel: Tunnel, client: socket.socket, upstream: socket.socket,
                 *, on_done: Callable[[], None], counted: Any = None, clock: Callable[[], float] = time.time):
        self.tunnel = tunnel
        self.client = client
        self.upstream = upstream
        self.on_done = on_done
        self.clock = clock
        self.counted = counted
        self._stopping = False
        self._running = 2
        self._lock = threading.Lock()
        self._last_moved = time.monotonic()  # either direction: a tunnel idle this long is dropped

    @classmethod
    def take_over(cls, relaying: PassThroughLayer) -> SpliceRelay | None:
        """Hand the layer's two sockets to a new relay, or None (the layer keeps
        relaying) when either has bytes waiting in mitmproxy or cannot be reached.
        Runs on mitmproxy's event loop."""
        client_conn, server_conn = relaying.context.client, relaying.context.server
        client = idle_stream(client_conn, client_conn)
        upstream = idle_stream(client_conn, server_conn)
        if client is None or upstream is None:
            return None
        (client_transport, client_sock), (upstream_transport, upstream_sock) = client, upstream
        try:
            client_dup, upstream_dup = client_sock.dup(), upstream_sock.dup()
        except OSError:
            return None
        client_transport.pause_reading()
        upstream_transport.pause_reading()
        loop = asyncio.get_running_loop()

        def done() -> None:
            # Back to mitmproxy, which now reads the end of both connections.
            for transport in (client_transport, upstream_transport):
                if not transport.is_closing():
                    transport.resume_reading()

        relay = cls(relaying.tunnel, client_dup, upstream_dup, on_done=lambda: loop.call_soon_threadsafe(done),
                    counted=relaying.counted, clock=relaying.clock)
        relay.start()
        return relay

    def start(self) -> None:
        name = f"hub-chaos tunnel {self.tunnel.id}"
        for source, target, from_client, direction in (
            (self.client, self.upstream, True, "up"), (self.upstream, self.client, False, "down"),
        ):
            counter = self.counted.labels(direction) if self.counted is not None else None
            try:
                threading.Thread(target=self._pump, args=(source, target, from_client, counter),
                                 name=f"{name} {direction}", daemon=True).start()
            except RuntimeError as err:  # no thread to be had: end the tunnel, never leave it paused
                self._failed(OSError(f"cannot start a relay thread: {err}"))
                self.stop()
                self._exited()

    def stop(self) -> None:
        """Shut both sockets down (at once: the peers see the close now); the threads then end."""
        self._stopping = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool, counter: Any) -> None:
        # Whatever happens here, the tunnel ends: both sockets shut, mitmproxy reading again.
        try:
            read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                self._relay(source, target, from_client, counter, read_end, write_end)
            finally:
                os.close(read_end)
                os.close(write_end)
        except OSError as err:
            self._failed(err)
        finally:
            self.stop()
            self._exited()

    def _relay(self, source: socket.socket, target: socket.socket, from_client: bool, counter: Any,
               read_end: int, write_end: int) -> None:
        try:
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # the default 64 KiB works too, in more steps
        readable, writable = select.poll(), select.poll()
        readable.register(source.fileno(), select.POLLIN)
        writable.register(target.fileno(), select.POLLOUT)
        while not self._stopping:
            if not readable.poll(POLL_MS):
                if self._idle_for() > IDLE_TIMEOUT_S:
                    self._failed(OSError(f"no byte either way for {IDLE_TIMEOUT_S:g} s"))
                    return
                continue
            try:
                size = os.splice(source.fileno(), write_end, PIPE_BYTES, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                continue
            if size == 0:
                return  # the peer closed
            self._moved()
            if from_client:
                with self.tunnel.lock:
                    forward = self.tunnel.client_data(size, self.clock())
                if not forward:
                    return  # doomed: this request must meet the fault
                if counter is not None:
                    counter.inc(size)
                self._drain(read_end, target, size, writable)
            else:
                with self.tunnel.lock:
                    sending = self.tunnel.upstream_sending(self.clock())
                if not sending:
                    return  # closed meanwhile
                # Counted once delivered: bytes the client never got are not its download.
                delivered = self._drain(read_end, target, size, writable)
                with self.tunnel.lock:
                    counted = self.tunnel.upstream_data(delivered, self.clock())
                if counted and delivered and counter is not None:
                    counter.inc(delivered)
                if delivered < size:
                    return

    def _drain(self, read_end: int, target: socket.socket, size: int, writable: Any) -> int:
        """Move `size` bytes from the pipe to `target`; the bytes moved (fewer
        when the target failed, stalled past IDLE_TIMEOUT_S or the relay stopped)."""
        moved = 0
        while moved < size and not self._stopping:
            try:
                moved += os.splice(read_end, target.fileno(), size - moved, flags=_SPLICE_FLAGS)
                self._moved()
            except BlockingIOError:
                if not writable.poll(POLL_MS) and self._idle_for() > IDLE_TIMEOUT_S:
                    self._failed(OSError(f"the peer took no byte for {IDLE_TIMEOUT_S:g} s"))
                    break
            except OSError as err:
                self._failed(err)
                break
        return moved

    def _moved(self) -> None:
        self._last_moved = time.monotonic()

    def _idle_for(self) -> float:
        return time.monotonic() - self._last_moved

    def _failed(self, err: OSError) -> None:
        if not self._stopping:
            with self.tunnel.lock:
                self.tunnel.error = self.tunnel.error or f"relay: {err.strerror or err}"

    def _exited(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            for sock in (self.client, self.upstream):
                sock.close()
            self.on_done()
