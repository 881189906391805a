"""Pass-through: CDN tunnels relayed unopened while no fault could match them
(chaos.proxy.passthrough), and what the proxy still knows and does about them.

Three levels: the Tunnel's bookkeeping (periods, dooming) on its own; the
PassThroughLayer driven event by event as mitmproxy drives it (its own relay,
the path taken when the sockets cannot be handed over); and a real mitmdump
relaying a real TLS upstream (the splice relay), with requests clients.
"""

import hashlib
import http.server
import os
import socket
import ssl
import threading
import time

import pytest
import requests
from mitmproxy import connection
from mitmproxy.options import Options
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.context import Context

from chaos.faults.faultset import FaultSet
from chaos.faults.match import Match
from chaos.faults.spec import parse_fault_spec
from chaos.proxy.passthrough import (
    QUIET_S,
    SPLICE,
    TICK_S,
    PassThroughLayer,
    SpliceRelay,
    Tunnel,
    Tunnels,
    tunnel_event,
)
from chaos.proxy.routing import Upstream, parse_roles
from chaos.proxy.tap import EVENT_FIELDS, EventTap
from chaos.proxy.upstream_tls import issue_server_cert
from chaos.steps.verdicts import upstream_counts
from chaos.vocab.endpoints import classify
from chaos.vocab.hub import CDN_HOST
from tests._fake_registry import closed_port
from tests.test_proxy_mitmdump import Mitmdump

CDN = f"https://{CDN_HOST}"
UPSTREAM = Upstream("https", "127.0.0.1", 1)


def tunnel(**overrides):
    fields = dict(id=1, host=CDN_HOST, port=443, role="cdn", origin="mirror", client="127.0.0.1:40000",
                  client_ip="127.0.0.1", upstream=UPSTREAM, opened=100.0)
    return Tunnel(**(fields | overrides))


def handshaken(t: Tunnel, now: float = 100.0) -> Tunnel:
    """A TLS 1.3 handshake's first two turns: ClientHello, the server's flight."""
    t.client_data(517, now)
    t.upstream_data(2500, now)
    return t


# -- the bookkeeping ---------------------------------------------------------------


def test_a_period_ends_once_the_upstream_answered_and_went_quiet():
    t = tunnel()
    assert t.client_data(500, 100.0)
    t.upstream_data(3000, 100.01)
    t.upstream_data(1_000_000, 100.2)
    assert t.busy
    assert t.tick(100.2 + QUIET_S / 2) is None  # still answering, maybe
    period = t.tick(100.2 + QUIET_S)
    assert (period.started, period.last, period.bytes_up, period.bytes_down) == (100.0, 100.2, 500, 1_003_000)
    assert t.idle and t.tick(200.0) is None


def test_a_client_awaiting_an_answer_keeps_its_period_open_however_long():
    t = tunnel()
    t.client_data(500, 100.0)
    assert t.tick(100.0 + 60) is None
    assert t.busy  # a request in flight: the runner's quiet wait must wait for it


def test_a_doomed_tunnel_lets_a_request_begun_before_the_fault_finish():
    t = tunnel()
    t.client_data(100, 100.0)
    t.doomed = True
    assert t.client_data(100, 100.01)  # the rest of the same request
    t.upstream_data(5000, 100.02)  # its answer


def answered(t: Tunnel, now: float = 100.0) -> Tunnel:
    """One whole exchange (handshake, request, a small answer), gone quiet."""
    handshaken(t, now)
    t.client_data(100, now)
    t.upstream_data(5000, now + 0.02)
    assert t.tick(now + 0.02 + QUIET_S) is not None
    return t


def test_a_doomed_tunnel_refuses_the_next_request():
    t = answered(tunnel())
    t.client_data(100, 101.0)  # a request begun before the fault
    t.upstream_data(5000, 101.02)  # its answer
    t.doomed = True
    assert not t.client_data(100, 101.03)  # a new request: it must meet the fault
    assert t.bytes_up == 717  # and is not counted as relayed


def test_a_tunnel_doomed_in_its_handshake_carries_the_request_sent_with_its_finished():
    # Its CONNECT came before the fault; encrypted, a handshake's turns and a
    # request's look alike: two client turns are the TLS 1.3 handshake's.
    t = tunnel()
    assert t.busy and not t.idle  # from the CONNECT on, never closed as idle before a request
    t.client_data(517, 100.0)  # ClientHello
    t.doomed = True
    t.upstream_data(2500, 100.01)  # the server's flight
    assert t.client_data(80, 100.02)  # Finished
    assert t.client_data(300, 100.02)  # and the first request, at once
    t.upstream_data(500, 100.03)  # session tickets, then the answer
    t.upstream_data(5000, 100.05)
    assert not t.client_data(300, 100.06)  # the next request meets the fault


def test_a_pooled_connection_opened_before_the_fault_takes_no_request_after_it():
    # A client that opened a connection, finished its handshake and left it idle
    # (a pool) sends its request in a third turn, after the fault: refused.
    t = tunnel()
    t.client_data(517, 100.0)
    t.upstream_data(2500, 100.01)
    t.client_data(80, 100.02)
    t.upstream_data(500, 100.03)  # session tickets
    t.doomed = True
    assert not t.client_data(300, 100.1)


def test_after_a_large_first_answer_the_next_request_is_refused_at_once():
    t = handshaken(tunnel())
    t.client_data(300, 100.0)
    t.upstream_data(6_000_000, 100.5)
    t.doomed = True
    assert not t.client_data(300, 100.6)


def test_a_spliced_answer_gives_the_upstream_the_turn_before_it_reaches_the_client():
    # The client may answer as soon as the bytes arrive, before the relay counts them.
    t = answered(tunnel())
    t.client_data(100, 101.0)
    t.doomed = True
    assert t.upstream_sending(101.01)
    assert t.tick(101.01 + QUIET_S) is None  # still draining: the answer is not over
    assert not t.client_data(100, 101.02)  # the next request meets the fault
    assert t.upstream_data(5000, 101.03) and t.period.bytes_down == 5000


def test_bytes_after_the_tunnel_closed_are_not_counted():
    t = handshaken(tunnel())
    t.close(100.1)
    assert not t.upstream_data(1000, 100.2) and not t.client_data(10, 100.2)
    assert (t.bytes_up, t.bytes_down, t.period) == (517, 2500, None)


def test_a_relay_that_failed_says_so_on_the_last_period_even_after_bytes():
    t = handshaken(tunnel())
    t.client_data(100, 100.0)
    t.upstream_data(50_000, 100.1)
    t.error = "relay: Connection reset by peer"
    period = t.close(100.2)
    event = tunnel_event(t, period, kind="blob")
    assert (event["status"], event["error"]) == (200, "relay: Connection reset by peer")


def test_closing_reports_the_open_period_but_not_a_trailing_close_alert():
    t = tunnel()
    t.client_data(100, 100.0)
    t.upstream_data(5000, 100.1)
    assert t.close(100.2).bytes_down == 5000
    u = tunnel()
    u.client_data(100, 100.0)
    u.upstream_data(5000, 100.1)
    u.tick(101.0)
    u.client_data(24, 102.0)  # the client's close_notify
    assert u.close(102.1) is None


def test_a_tunnel_the_upstream_never_answered_reports_that():
    t = tunnel()
    t.client_data(300, 100.0)
    period = t.close(100.5, "cannot reach https://127.0.0.1:1: Connection refused")
    event = tunnel_event(t, period, kind="blob")
    assert (event["status"], event["bytes"], event["error"]) == (None, 0, "cannot reach https://127.0.0.1:1: Connection refused")


def test_the_event_says_what_a_relayed_tunnel_can_show_and_counts_as_a_blob_download():
    t = tunnel(id=7)
    t.client_data(700, 100.0)
    t.upstream_data(2_000_000, 100.5)
    event = tunnel_event(t, t.tick(101.0), kind=classify(CDN_HOST, "GET", "/").kind)
    EventTap().append(event)  # exactly the tap's fields
    assert set(event) == EVENT_FIELDS
    assert {k: event[k] for k in ("host", "role", "kind", "method", "path", "status", "bytes", "fault", "origin")} == {
        "host": CDN_HOST, "role": "cdn", "kind": "blob", "method": "CONNECT", "path": f"{CDN_HOST}:443",
        "status": 200, "bytes": 2_000_000, "fault": None, "origin": "mirror",
    }
    assert (event["repository"], event["reference"]) == (None, None)  # encrypted: not known
    assert event["tunnel"] == {"id": 7, "bytes_up": 700, "closed": False}
    assert event["latency_ms"] == 500.0
    # from_cache and upstream.blob_bytes count it as blob bytes from upstream.
    assert upstream_counts([event])["blob_bytes"] == 2_000_000


def test_dooming_returns_only_the_idle_tunnels_it_could_match():
    tunnels = Tunnels()
    idle, busy, other = tunnel(id=1), tunnel(id=2), tunnel(id=3, origin="client")
    for t in (idle, other):  # one exchange, answered and gone quiet
        handshaken(t)
        t.tick(100.0 + QUIET_S)
    busy.client_data(10, 100.0)
    for t in (idle, busy, other):
        tunnels.add(t, f"conn-{t.id}")
    assert tunnels.busy() == 1
    closing = tunnels.doom(lambda t: t.origin == "mirror")
    assert closing == [(idle, "conn-1")]
    assert (idle.doomed, busy.doomed, other.doomed) == (True, True, False)


@pytest.mark.parametrize(
    "match, expected",
    [
        (Match(), True),
        (Match(roles=("cdn",)), True),
        (Match(roles=("registry", "auth")), False),
        (Match(endpoints=("blob",)), True),
        (Match(endpoints=("manifest", "token")), False),
        (Match(methods=("HEAD",)), True),  # a method is never seen in a tunnel: it could be one
        (Match(repository="library/*"), False),  # CDN requests carry no repository
        (Match(hosts=("*.cloudflare.docker.com",)), True),
        (Match(origins=("client",)), False),
        (Match(clients=("10.0.0.0/8",)), False),
    ],
)
def test_which_faults_could_match_a_cdn_tunnel(match, expected):
    assert match.may_match(CDN_HOST, classify(CDN_HOST, "GET", "/"), "127.0.0.1", "mirror") is expected


def test_a_faultset_could_match_when_any_active_fault_could():
    faults = FaultSet()
    probe = classify(CDN_HOST, "GET", "/")
    faults.add(parse_fault_spec({"name": "manifests", "kind": "http", "params": {"status": 503}, "match": {"endpoints": ["manifest"]}}))
    assert not faults.may_match(CDN_HOST, probe, "127.0.0.1", "mirror")
    faults.add(parse_fault_spec({"name": "later", "kind": "reset", "match": {"roles": ["cdn"]}, "trigger": {"start_after_s": 60}}))
    assert faults.may_match(CDN_HOST, probe, "127.0.0.1", "mirror")  # not firing yet, but it will


@pytest.mark.parametrize("text, roles", [("", ()), ("registry, auth", ("registry", "auth")), ("cdn,cdn", ("cdn",))])
def test_roles_parse(text, roles):
    assert parse_roles(text) == roles


def test_an_unknown_role_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown role 'cnd'"):
        parse_roles("registry,cnd")


# -- the layer, as mitmproxy drives it -------------------------------------------------


class Driven:
    """A PassThroughLayer fed events by hand, as mitmproxy's connection handler
    does: blocking commands are answered, every command is kept."""

    def __init__(self, t: Tunnel):
        client = connection.Client(peername=("127.0.0.1", 40000), sockname=("127.0.0.1", 8080), timestamp_start=1.0)
        client.state = connection.ConnectionState.OPEN
        self.context = Context(client, Options())
        self.context.server = connection.Server(address=(CDN_HOST, 443))
        self.now = 100.0
        self.reported = []
        self.ended = []
        self.layer = PassThroughLayer(self.context, t, lambda tn, p: self.reported.append(p), self.ended.append,
                                      splice=False, clock=lambda: self.now)
        self.commands = []

    def send(self, event):
        out = list(self.layer.handle_event(event))
        self.commands += out
        return out

    def start(self, error=None):
        [opening] = self.send(events.Start())
        assert isinstance(opening, commands.OpenConnection)
        assert self.context.server.address == (UPSTREAM.host, UPSTREAM.port)  # routed, not the CDN's name
        if error is None:
            self.context.server.state = connection.ConnectionState.OPEN
        return self.send(events.OpenConnectionCompleted(opening, error))


def sent(cmds, conn):
    return [c.data for c in cmds if isinstance(c, commands.SendData) and c.connection is conn]


def closed(cmds):
    return [c.connection for c in cmds if isinstance(c, commands.CloseConnection)]


def test_the_layer_relays_bytes_and_reports_a_period_when_it_goes_quiet():
    d = Driven(tunnel())
    [wakeup] = d.start()
    assert isinstance(wakeup, commands.RequestWakeup) and wakeup.delay == TICK_S
    client, server = d.context.client, d.context.server
    assert sent(d.send(events.DataReceived(client, b"hello")), server) == [b"hello"]
    d.now += 0.01
    assert sent(d.send(events.DataReceived(server, b"x" * 1000)), client) == [b"x" * 1000]
    d.now += QUIET_S
    again = d.send(events.Wakeup(wakeup))
    assert [type(c) for c in again] == [commands.RequestWakeup]
    [period] = d.reported
    assert (period.bytes_up, period.bytes_down) == (5, 1000)


def test_the_layer_closes_a_doomed_tunnel_instead_of_forwarding_a_new_request():
    t = tunnel()
    d = Driven(t)
    d.start()
    client, server = d.context.client, d.context.server
    [wakeup] = [c for c in d.commands if isinstance(c, commands.RequestWakeup)]
    d.send(events.DataReceived(client, b"GET 1"))
    d.send(events.DataReceived(server, b"answer 1"))
    d.now += QUIET_S
    d.send(events.Wakeup(wakeup))  # the first exchange went quiet
    d.send(events.DataReceived(client, b"GET 2"))
    d.send(events.DataReceived(server, b"answer 2"))
    t.doomed = True
    out = d.send(events.DataReceived(client, b"GET 3"))
    assert sent(out, server) == []
    assert set(closed(out)) == {client, server}
    assert d.ended == [t] and t.closed
    assert [p.bytes_up for p in d.reported] == [5, 5]  # the answered exchanges, not the refused request


def test_the_layer_closes_a_doomed_idle_tunnel_at_its_next_tick():
    t = tunnel()
    d = Driven(t)
    [wakeup] = d.start()
    d.send(events.DataReceived(d.context.client, b"GET 1"))
    d.send(events.DataReceived(d.context.server, b"answer 1"))
    d.now += QUIET_S
    t.doomed = True
    out = d.send(events.Wakeup(wakeup))
    assert set(closed(out)) == {d.context.client, d.context.server}
    assert not any(isinstance(c, commands.RequestWakeup) for c in out)


def test_a_client_that_left_is_closed_for_writing_too():
    # mitmproxy keeps a half-closed connection (and its handler) until a layer closes it.
    d = Driven(tunnel())
    d.start()
    client = d.context.client
    d.send(events.DataReceived(client, b"GET 1"))
    d.send(events.DataReceived(d.context.server, b"answer 1"))
    client.state = connection.ConnectionState.CAN_WRITE
    out = d.send(events.ConnectionClosed(client))
    assert set(closed(out)) == {client, d.context.server}


def test_an_unreachable_upstream_closes_the_client_and_says_why():
    t = tunnel()
    d = Driven(t)
    out = d.start(error="Connection refused")
    assert closed(out) == [d.context.client]
    [period] = d.reported
    event = tunnel_event(t, period, kind="blob")
    assert event["status"] is None and "Connection refused" in event["error"]


# -- the splice relay, on socket pairs ---------------------------------------------------


class Counted:
    """prometheus_client's labelled counter, as the relay uses it."""

    def __init__(self):
        self.values = {}

    def labels(self, direction):
        counted = self

        class _One:
            def inc(self, amount):
                counted.values[direction] = counted.values.get(direction, 0) + amount

        return _One()


def _read_exactly(sock, size, deadline_s=10):
    sock.settimeout(deadline_s)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.skipif(not SPLICE, reason="splice(2) is Linux-only")
def test_the_splice_relay_counts_what_reached_the_client_and_ends_the_tunnel_when_a_side_goes():
    t = handshaken(tunnel())
    client_far, client_near = socket.socketpair()
    upstream_far, upstream_near = socket.socketpair()
    for sock in (client_near, upstream_near):
        sock.setblocking(False)
    done = threading.Event()
    counted = Counted()
    relay = SpliceRelay(t, client_near, upstream_near, on_done=done.set, counted=counted)
    relay.start()
    try:
        client_far.sendall(b"GET /blob")
        assert _read_exactly(upstream_far, 9) == b"GET /blob"
        answer = os.urandom(300_000)
        upstream_far.sendall(answer)
        assert _read_exactly(client_far, len(answer)) == answer
        deadline = time.monotonic() + 10
        while counted.values.get("down", 0) < len(answer) and time.monotonic() < deadline:
            time.sleep(0.01)
        with t.lock:
            assert counted.values == {"up": 9, "down": len(answer)}
            assert t.bytes_down - 2500 == len(answer)  # the handshake's bytes came before the relay
        client_far.close()  # the client left
        assert done.wait(10), "the relay did not end when the client left"
        assert upstream_far.recv(1) == b""  # and the upstream was let go too
    finally:
        relay.stop()
        for sock in (client_far, upstream_far):
            sock.close()


@pytest.mark.skipif(not SPLICE, reason="splice(2) is Linux-only")
def test_a_relay_that_cannot_start_its_threads_still_ends_the_tunnel(monkeypatch):
    t = handshaken(tunnel())
    client_far, client_near = socket.socketpair()
    upstream_far, upstream_near = socket.socketpair()
    done = threading.Event()

    def no_thread(*args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    relay = SpliceRelay(t, client_near, upstream_near, on_done=done.set)
    relay.start()
    assert done.is_set() and "cannot start a relay thread" in t.error
    assert client_far.recv(1) == b"" and upstream_far.recv(1) == b""  # both sides shut
    client_far.close()
    upstream_far.close()


# -- a real mitmdump -------------------------------------------------------------------

BLOB = bytes(range(256)) * (24 * 1024)  # 6 MiB
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()


class _TlsHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = BLOB if self.path.startswith("/blob") else b"small"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for start in range(0, len(body), 256 * 1024):
                self.wfile.write(body[start:start + 256 * 1024])
                if self.path == "/blob/slow":
                    time.sleep(0.02)
        except OSError:
            pass

    def log_message(self, *args):
        pass


class TlsUpstream(http.server.ThreadingHTTPServer):
    """A CDN stand-in serving TLS for production.cloudflare.docker.com, its
    certificate issued by the proxy's CA, HTTP/1.1 only (as the lab's CDN)."""

    daemon_threads = True

    def __init__(self, cert):
        super().__init__(("127.0.0.1", 0), _TlsHandler)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert.cert_file, cert.key_file)
        self.tls.set_alpn_protocols(["http/1.1"])

    def get_request(self):
        sock, address = self.socket.accept()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


class RoutedMitmdump(Mitmdump):
    """The test Mitmdump with routes of its own: registry to a plain upstream, cdn to a TLS one."""

    def __init__(self, workdir, plain_port, cdn_url, extra=("--set", "hub_passthrough=true")):
        trust = ("--set", f"ssl_verify_upstream_trusted_ca={workdir / 'conf' / 'mitmproxy-ca-cert.pem'}")
        super().__init__(workdir, plain_port, extra=(*trust, *extra))
        routes = f"hub_routes=registry=http://127.0.0.1:{plain_port},cdn={cdn_url}"
        self.argv = [routes if arg.startswith("hub_routes=") else arg for arg in self.argv]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A TLS CDN whose certificate comes from the proxy's CA (made before mitmdump starts,
    as the lab does), a plain upstream for the registry, and the proxy."""
    workdir = tmp_path_factory.mktemp("passthrough")
    cert = issue_server_cert(workdir / "conf", workdir / "tls", (CDN_HOST, "127.0.0.1"), name="cdn")
    cdn = TlsUpstream(cert)
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TlsHandler)
    for server in (cdn, plain):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    cdn_url = f"https://127.0.0.1:{cdn.server_port}"
    try:
        with RoutedMitmdump(workdir, plain.server_port, cdn_url) as proxy:
            proxy.cdn = cdn
            proxy.cdn_url = cdn_url
            yield proxy
    finally:
        for server in (cdn, plain):
            server.shutdown()
            server.server_close()


@pytest.fixture
def proxy(stack):
    stack.control.reset()
    quiet(stack)
    yield stack
    stack.control.reset()


def quiet(proxy, deadline_s=10):
    deadline = time.monotonic() + deadline_s
    while proxy.control.health()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.control.health()["in_flight"] == 0


def metric(proxy, name, **labels):
    for line in proxy.control.metrics().splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_cdn_download_passes_through_unopened_and_is_counted(proxy):
    cursor = proxy.control.health()["last_event"]
    relayed_before = metric(proxy, "hub_chaos_passthrough_bytes_total", direction="down")
    spliced_before = metric(proxy, "hub_chaos_passthrough_tunnels_total", relay="splice")
    with proxy.session() as session:
        response = session.get(f"{CDN}/blob/a", timeout=20)
        assert hashlib.sha256(response.content).hexdigest() == BLOB_SHA
        quiet(proxy)
        [event] = proxy.control.events(after=cursor).events
    assert (event["method"], event["role"], event["kind"], event["status"], event["fault"]) == ("CONNECT", "cdn", "blob", 200, None)
    assert event["tunnel"]["id"] >= 1 and event["tunnel"]["bytes_up"] > 0
    assert len(BLOB) < event["bytes"] < len(BLOB) + 64 * 1024  # the TLS records: body, headers, handshake
    # Counted as it passed, apart from the tap: the two agree.
    assert metric(proxy, "hub_chaos_passthrough_bytes_total", direction="down") - relayed_before == event["bytes"]
    # ... by splice(2), around mitmproxy's event loop.
    assert metric(proxy, "hub_chaos_passthrough_tunnels_total", relay="splice") - spliced_before == 1
    # mitmproxy never saw the request (it logs every flow it sees: see the test with pass-through off).
    assert "/blob/a" not in proxy.log_text()


def _open_fds(proxy):
    return len(os.listdir(f"/proc/{proxy.process.pid}/fd"))


def test_tunnels_the_clients_closed_leave_no_connection_behind(proxy):
    # Each tunnel closed by its client must be closed by the proxy too: a half-closed
    # connection left open kept its socket and all of mitmproxy's state for it.
    before = _open_fds(proxy)
    for _ in range(20):
        with proxy.session() as session:
            assert session.get(f"{CDN}/small", headers={"Connection": "close"}, timeout=10).content == b"small"
    quiet(proxy)
    deadline = time.monotonic() + 10
    while _open_fds(proxy) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_fds(proxy) <= before + 2
    assert metric(proxy, "hub_chaos_passthrough_tunnels_open") == 0


def test_a_busy_tunnel_is_a_request_in_flight_until_its_answer_went_quiet(proxy):
    with proxy.session() as session:
        response = session.get(f"{CDN}/blob/slow", timeout=20, stream=True)
        first = next(response.iter_content(64 * 1024))
        assert proxy.control.health()["in_flight"] == 1
        body = first + b"".join(response.iter_content(1 << 20))
        assert hashlib.sha256(body).hexdigest() == BLOB_SHA
        assert proxy.control.health()["in_flight"] == 1  # quiet for less than QUIET_S yet
    quiet(proxy)


def test_a_fault_switched_on_after_a_tunnel_opened_applies_to_the_next_request(proxy):
    cursor = proxy.control.health()["last_event"]
    with proxy.session() as session:
        assert session.get(f"{CDN}/small", timeout=10).content == b"small"  # a kept-alive tunnel, relayed
        quiet(proxy)
        proxy.control.add({"name": "cdn-down", "kind": "http", "params": {"status": 503}, "match": {"roles": ["cdn"]}})
        response = session.get(f"{CDN}/small", timeout=10)  # same session: the old tunnel is gone
        assert response.status_code == 503
    quiet(proxy)
    events = proxy.control.events(after=cursor).events
    assert [(e["method"], e["status"], e["fault"], e["tunnel"] is not None) for e in events] == [
        ("CONNECT", 200, None, True),
        ("GET", 503, "cdn-down", False),
    ]
    [fault] = proxy.control.list()
    assert fault["counters"]["applied"] == 1


def _tls_through_proxy(proxy):
    """A keep-alive TLS connection to the CDN host through the proxy (CONNECT), raw."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(f"CONNECT {CDN_HOST}:443 HTTP/1.1\r\nHost: {CDN_HOST}:443\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))
    return context.wrap_socket(sock, server_hostname=CDN_HOST)


def _get(tls, path):
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {CDN_HOST}\r\n\r\n".encode())


def _read_answer(tls, data=b""):
    """The body of the next answer on the connection, None when it closed first."""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = tls.recv(1 << 20)
        assert chunk, "the answer was cut"
        body += chunk
    return body


def test_a_tunnel_busy_when_a_fault_comes_finishes_its_answer_then_takes_no_new_request(proxy):
    tls = _tls_through_proxy(proxy)
    try:
        _get(tls, "/blob/slow")
        begun = tls.recv(1)  # the answer has begun
        proxy.control.add({"name": "cdn-down", "kind": "http", "params": {"status": 503}, "match": {"roles": ["cdn"]}})
        assert _read_answer(tls, begun) == BLOB  # begun before the fault: it completes, whole ...
        _get(tls, "/small")  # ... but a request sent after it does not go through this tunnel
        assert _read_answer(tls) is None
    finally:
        tls.close()
    with proxy.session() as session:
        assert session.get(f"{CDN}/small", timeout=10).status_code == 503


def test_a_fault_that_cannot_match_the_cdn_leaves_its_tunnels_alone(proxy):
    with proxy.session() as session:
        assert session.get(f"{CDN}/small", timeout=10).ok
        quiet(proxy)
        cursor = proxy.control.health()["last_event"]
        proxy.control.add({"name": "registry-down", "kind": "refuse", "match": {"roles": ["registry"]}})
        assert session.get(f"{CDN}/small", timeout=10).content == b"small"
        quiet(proxy)
    [event] = proxy.control.events(after=cursor).events
    assert event["tunnel"] is not None and event["fault"] is None


@pytest.mark.parametrize("kind, params", [("corrupt", {}), ("truncate", {"after_bytes": 100}), ("bandwidth", {"rate_kbps": 20000})])
def test_with_a_cdn_fault_on_the_tunnel_is_intercepted_and_the_fault_acts(proxy, kind, params):
    proxy.control.add({"name": "f", "kind": kind, "params": params, "match": {"roles": ["cdn"]}})
    cursor = proxy.control.health()["last_event"]
    with proxy.session() as session:
        try:
            content = session.get(f"{CDN}/blob/b", timeout=20).content
        except requests.exceptions.ChunkedEncodingError:
            content = b""
    assert (content == BLOB) is (kind == "bandwidth")
    quiet(proxy)
    [event] = proxy.control.events(after=cursor).events
    assert (event["method"], event["tunnel"], event["fault"]) == ("GET", None, "f")


def test_an_unreachable_upstream_is_an_event_without_a_status(tmp_path):
    cert = issue_server_cert(tmp_path / "conf", tmp_path / "tls", (CDN_HOST,), name="cdn")
    port = closed_port()
    del cert
    with RoutedMitmdump(tmp_path, port, f"https://127.0.0.1:{port}") as proxy:
        with proxy.session() as session, pytest.raises(requests.exceptions.ConnectionError):
            session.get(f"{CDN}/small", timeout=10)
        quiet(proxy)
        [event] = proxy.control.events(after=0).events
    assert (event["method"], event["status"], event["bytes"]) == ("CONNECT", None, 0)
    assert "cannot reach" in event["error"]


def test_pass_through_is_off_unless_asked_for_and_then_every_cdn_request_is_intercepted(tmp_path):
    cert = issue_server_cert(tmp_path / "conf", tmp_path / "tls", (CDN_HOST, "127.0.0.1"), name="cdn")
    cdn = TlsUpstream(cert)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{cdn.server_port}"
        with RoutedMitmdump(tmp_path, cdn.server_port, url, extra=()) as proxy:  # hub_passthrough's default
            with proxy.session() as session:
                assert hashlib.sha256(session.get(f"{CDN}/blob/c", timeout=20).content).hexdigest() == BLOB_SHA
            quiet(proxy)
            [event] = proxy.control.events(after=0).events
            assert "GET https://127.0.0.1" in proxy.log_text() and "/blob/c" in proxy.log_text()
    finally:
        cdn.shutdown()
        cdn.server_close()
    assert (event["method"], event["path"], event["bytes"], event["tunnel"]) == ("GET", "/blob/c", len(BLOB), None)
