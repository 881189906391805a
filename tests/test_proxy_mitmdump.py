"""The addon inside a real mitmdump, in regular (HTTPS_PROXY) and reverse mode.

Nothing leaves the machine: every Hub host name is routed to an in-test HTTP
upstream on loopback, and the mitmdump log must show no other server connection.
"""

import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from chaos.errors import EnvironmentProblem, UsageError
from chaos.lab.ports import free_port
from chaos.proxy.control_client import ControlClient

pytestmark = pytest.mark.lab

MITMDUMP = Path(sys.executable).with_name("mitmdump")
ADDON = Path(__file__).resolve().parents[1] / "addons" / "hub_chaos.py"
BIG = 5 * 1024 * 1024
REGISTRY = "https://registry-1.docker.io"


class Upstream(http.server.ThreadingHTTPServer):
    """Plain-HTTP stand-in for the lab hub; remembers the headers it was sent."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.seen = []


class _UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.seen.append(
            {"path": self.path, "host": self.headers["Host"], "proto": self.headers["X-Forwarded-Proto"]}
        )
        body = b"\x00" * BIG if self.path == "/big" else json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Mitmdump:
    def __init__(self, workdir, upstream_port, mode_args=(), portfile=False, extra=(), port=None, control=None):
        self.confdir = workdir / "conf"
        self.log = workdir / "mitmdump.log"
        self.port = port or free_port()
        # With a portfile the addon picks its own free port and tells us which.
        self.portfile = workdir / "control.port" if portfile else None
        control = control or ("127.0.0.1:0" if portfile else f"127.0.0.1:{free_port()}")
        target = f"http://127.0.0.1:{upstream_port}"
        self.argv = [
            str(MITMDUMP),
            *mode_args,
            "-s", str(ADDON),
            "--listen-host", "127.0.0.1",
            "-p", str(self.port),
            "--set", f"confdir={self.confdir}",
            "--set", "connection_strategy=lazy",
            "--set", "stream_large_bodies=1m",
            "--set", f"hub_routes=registry={target},auth={target},cdn={target}",
            "--set", f"hub_control={control}",
            "--set", f"hub_control_portfile={self.portfile or ''}",
            *extra,
        ]  # fmt: skip
        self.control = ControlClient(control.replace("0.0.0.0", "127.0.0.1"), timeout=5)

    def __enter__(self):
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            if self.portfile:
                self.control = ControlClient(f"http://127.0.0.1:{self._read_portfile(20)}")
            self.control.wait_ready(deadline_s=20)
        except EnvironmentProblem as err:
            self.stop()
            pytest.fail(f"mitmdump not ready: {err}\n{self.log_text()[-3000:]}")
        return self

    def _read_portfile(self, deadline_s):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.portfile.exists():
                return int(self.portfile.read_text())
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise EnvironmentProblem(f"no control port in {self.portfile}")

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.control.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    def log_text(self):
        return self.log.read_text(errors="replace")

    def session(self, port=None):
        session = requests.Session()
        session.trust_env = False
        session.proxies = {"https": f"http://127.0.0.1:{port or self.port}", "http": f"http://127.0.0.1:{port or self.port}"}
        session.verify = str(self.confdir / "mitmproxy-ca-cert.pem")
        return session

    def assert_only_loopback_upstreams(self):
        log = self.log_text()
        assert "error establishing server connection" not in log
        servers = re.findall(r"server connect (\S+)", log)
        assert servers and all(s.startswith("127.0.0.1:") for s in servers), servers


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, upstream):
    with Mitmdump(tmp_path_factory.mktemp("regular"), upstream.server_port) as running:
        yield running


@pytest.fixture
def clean(proxy):
    proxy.control.reset()
    yield proxy
    proxy.control.reset()


def test_registry_request_reaches_upstream_with_host_preserved(clean, upstream):
    response = clean.session().get(f"{REGISTRY}/v2/", timeout=10)
    assert response.status_code == 200
    assert upstream.seen[-1] == {"path": "/v2/", "host": "registry-1.docker.io", "proto": "https"}
    clean.assert_only_loopback_upstreams()


def test_large_body_streams_and_the_tap_counts_its_bytes(clean):
    cursor = clean.control.health()["last_event"]
    response = clean.session().get(f"{REGISTRY}/big", timeout=20)
    assert len(response.content) == BIG
    [event] = clean.control.events(after=cursor).events
    assert (event["path"], event["status"], event["bytes"]) == ("/big", 200, BIG)


def test_refuse_breaks_new_and_kept_alive_connections_until_removed(clean):
    warm = clean.session()
    assert warm.get(f"{REGISTRY}/v2/", timeout=10).ok  # opens a keep-alive tunnel
    cursor = clean.control.health()["last_event"]

    clean.control.add({"name": "hub-down", "kind": "refuse"})
    with pytest.raises(requests.exceptions.ProxyError, match="502"):
        clean.session().get(f"{REGISTRY}/v2/library/alpine/manifests/3", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):
        warm.get(f"{REGISTRY}/v2/", timeout=10)

    clean.control.remove("hub-down")
    assert clean.session().get(f"{REGISTRY}/v2/", timeout=10).ok
    assert warm.get(f"{REGISTRY}/v2/", timeout=10).ok

    events = clean.control.events(after=cursor).events
    summary = [(e["method"], e["kind"], e["status"], e["fault"]) for e in events]
    assert summary == [
        ("CONNECT", "connect", 502, "hub-down"),
        ("GET", "ping", None, "hub-down"),
        ("GET", "ping", 200, None),
        ("GET", "ping", 200, None),
    ]


def test_inflight_names_each_request_a_fault_holds_open_until_it_is_released(clean):
    # What a run's diagnosis reads when a blackhole outlives its step.
    clean.control.add({"name": "registry-hole", "kind": "blackhole", "match": {"endpoints": ["manifest"]}})
    with socket.create_connection(("127.0.0.1", clean.port), timeout=10) as sock:
        sock.sendall(b"HEAD http://registry-1.docker.io/v2/library/alpine/manifests/3.19 HTTP/1.1\r\n"
                     b"Host: registry-1.docker.io\r\n\r\n")
        deadline = time.monotonic() + 10
        while not (held := clean.control.in_flight_requests()) and time.monotonic() < deadline:
            time.sleep(0.05)
        [request] = held
        assert {k: request[k] for k in ("method", "kind", "repository", "reference", "role", "origin", "faults", "answered")} == {
            "method": "HEAD", "kind": "manifest", "repository": "library/alpine", "reference": "3.19",
            "role": "registry", "origin": "unknown", "faults": ["registry-hole"], "answered": False,
        }
        assert request["host"] == "registry-1.docker.io" and request["held_s"] >= 0
        assert clean.control.health()["in_flight"] == 1
        clean.control.remove("registry-hole")  # releases what it holds
        deadline = time.monotonic() + 10
        while clean.control.in_flight_requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert clean.control.in_flight_requests() == []


def test_refused_connect_gets_502_then_the_connection_closes(clean):
    clean.control.add({"name": "hub-down", "kind": "refuse", "match": {"roles": ["registry"]}})
    with socket.create_connection(("127.0.0.1", clean.port), timeout=10) as sock:
        sock.sendall(b"CONNECT registry-1.docker.io:443 HTTP/1.1\r\nHost: registry-1.docker.io:443\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # ends only when the proxy closes (or times out)
            received += chunk
    assert received.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


def test_auth_and_cdn_hosts_are_routed_and_classified(clean, upstream):
    cursor = clean.control.health()["last_event"]
    session = clean.session()
    session.get("https://auth.docker.io/token?scope=repository:library/redis:pull", timeout=10)
    session.get("https://production.cloudflare.docker.com/x/sha256/ab/" + "ab" * 32 + "/data", timeout=10)
    events = clean.control.events(after=cursor).events
    assert [(e["role"], e["kind"], e["repository"]) for e in events] == [
        ("auth", "token", "library/redis"),
        ("cdn", "blob", None),
    ]
    assert upstream.seen[-1]["host"] == "production.cloudflare.docker.com"


def test_reverse_mode_routes_to_loopback_and_applies_faults(tmp_path, upstream):
    mode = ["--mode", f"reverse:{REGISTRY}"]
    with Mitmdump(tmp_path, upstream.server_port, mode, portfile=True) as proxy:
        session = requests.Session()
        session.trust_env = False
        url = f"http://127.0.0.1:{proxy.port}/v2/library/alpine/manifests/3"
        assert session.get(url, timeout=10).ok
        assert upstream.seen[-1]["host"] == "registry-1.docker.io"

        proxy.control.add({"name": "rst", "kind": "reset"})
        served = len(upstream.seen)
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(url, timeout=10)
        assert len(upstream.seen) == served + 1  # upstream answered; the client never saw it
        events = proxy.control.events().events
        assert [(e["host"], e["kind"], e["status"], e["fault"]) for e in events] == [
            ("registry-1.docker.io", "manifest", 200, None),
            ("registry-1.docker.io", "manifest", None, "rst"),
        ]
        proxy.assert_only_loopback_upstreams()


def test_busy_control_port_makes_mitmdump_exit_with_the_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [
            str(MITMDUMP), "-s", str(ADDON), "--listen-host", "127.0.0.1", "-p", "0",
            "--set", f"confdir={tmp_path}", "--set", f"hub_control=127.0.0.1:{port}",
        ]  # fmt: skip
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            output, _ = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
    assert process.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in output.decode()


def run_until_exit(argv, timeout=20):
    """Run mitmdump to its end (it must stop by itself); (exit code, output)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize(
    "option, problem",
    [
        ("hub_control=nonsense", "Cannot use hub_control option 'nonsense': expected HOST:PORT"),
        ("hub_control=0.0.0.0:5380", "not loopback; the control API answers other hosts only with a token"),
        ("hub_origins=mirror=1", "Cannot use hub_origins option 'mirror=1': port 1 of mirror is not a listener"),
        ('hub_faults=[{"name": "a", "kind": "refuse", "ttl_s": 100000}]', "fault 1: ttl_s: at most 86400 s (24 h)"),
        ("hub_tap_capacity=x", "Not an integer: x"),
        ("hub_cdn_host=cdn.example.com", "Cannot use hub_cdn_host option 'cdn.example.com'"),
    ],
)
def test_a_bad_option_value_stops_mitmdump_with_one_line(tmp_path, option, problem):
    argv = [str(MITMDUMP), "-s", str(ADDON), "--listen-host", "127.0.0.1", "-p", "0",
            "--set", f"confdir={tmp_path}", "--set", option]  # fmt: skip
    code, output = run_until_exit(argv)
    assert code != 0
    [line] = [line for line in output.splitlines() if problem in line]
    assert line.endswith(problem) or problem in line
    assert "Traceback" not in output and "direct cause" not in output, output


def test_sigterm_with_open_connections_stops_quietly(tmp_path, upstream):
    extra = ("--set", 'hub_faults=[{"name": "hole", "kind": "blackhole"}]')
    proxy = Mitmdump(tmp_path, upstream.server_port, extra=extra)
    with proxy:
        held = []
        for _ in range(3):  # requests held open by the blackhole, and one idle connection
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(b"GET http://registry-1.docker.io/v2/ HTTP/1.1\r\nHost: registry-1.docker.io\r\n\r\n")
            held.append(sock)
        held.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=10))
        deadline = time.monotonic() + 10
        while proxy.control.health()["in_flight"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.control.health()["in_flight"] == 3
        os.killpg(proxy.process.pid, signal.SIGTERM)
        assert proxy.process.wait(timeout=10) == 0
        for sock in held:
            sock.close()
    log = proxy.log_text()
    assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]


LAB_LOG_FLAGS = ("--set", "termlog_verbosity=alert", "--set", "flow_detail=0")


def test_with_the_labs_log_flags_the_log_holds_what_a_person_debugging_needs(tmp_path, upstream):
    proxy = Mitmdump(tmp_path, upstream.server_port, extra=LAB_LOG_FLAGS)
    with proxy:
        session = proxy.session()
        assert session.get(f"{REGISTRY}/v2/", timeout=10).ok
        proxy.control.add({"name": "slow", "kind": "latency", "params": {"delay_ms": 1}, "match": {"roles": ["auth"]}})
        assert session.get(f"{REGISTRY}/v2/", timeout=10).ok
        proxy.control.remove("slow")
        proxy.control.add({"name": "brief", "kind": "refuse", "match": {"roles": ["cdn"]}, "ttl_s": 0.5})
        with pytest.raises(UsageError):
            proxy.control.add({"name": "bad", "kind": "refuze"})
        with pytest.raises(requests.exceptions.ProxyError, match="403"):
            session.get("https://example.com/", timeout=10)
        deadline = time.monotonic() + 10
        while "fault off (expired)" not in proxy.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    lines = [re.sub(r"^\[[0-9:.]+\] ", "", line) for line in proxy.log_text().splitlines()]
    assert lines == [
        f"hub-chaos: routes registry=http://127.0.0.1:{upstream.server_port},"
        f" auth=http://127.0.0.1:{upstream.server_port}, cdn=http://127.0.0.1:{upstream.server_port}",
        f"hub-chaos: control API on {proxy.control.base_url} (loopback only, no token)",
        "hub-chaos: fault on: slow (latency) params delay_ms=1 jitter_ms=0 match roles=auth, expires in 300 s",
        "hub-chaos: fault off (removed): slow (latency)",
        "hub-chaos: fault on: brief (refuse) match roles=cdn, expires in 0 s",
        "hub-chaos: control API: POST /faults -> 400 kind: unknown fault kind 'refuze' (expected one of:"
        " auth-deny, bandwidth, blackhole, corrupt, http, latency, rate-limit, refuse, reset, stall, truncate)",
        "hub-chaos: refused CONNECT for 'example.com' from 127.0.0.1: not a Docker Hub host"
        " (logged once per host; hub_allow_hosts or hub_allow_any_host forward it)",
        "hub-chaos: fault off (expired): brief (refuse)",
    ]


def test_each_listener_tags_its_events_with_its_origin(tmp_path, upstream):
    mirror_port, client_port = free_port(), free_port()
    modes = ("--mode", f"regular@{mirror_port}", "--mode", f"regular@{client_port}")
    extra = ("--set", f"hub_origins=mirror={mirror_port},client={client_port}")
    with Mitmdump(tmp_path, upstream.server_port, mode_args=modes, extra=extra, port=mirror_port) as proxy:
        proxy.control.add({"name": "client-only", "kind": "http", "params": {"status": 503},
                           "match": {"origins": ["client"], "endpoints": ["manifest"]}})  # fmt: skip
        manifest = f"{REGISTRY}/v2/library/alpine/manifests/3"
        assert proxy.session(mirror_port).get(manifest, timeout=10).status_code == 200
        assert proxy.session(client_port).get(manifest, timeout=10).status_code == 503
        events = proxy.control.events().events
        proxy.assert_only_loopback_upstreams()
    assert [(e["origin"], e["status"], e["fault"]) for e in events] == [
        ("mirror", 200, None),
        ("client", 503, "client-only"),
    ]


def test_other_hosts_are_refused_with_403_and_never_contacted(clean):
    cursor = clean.control.health()["last_event"]
    with pytest.raises(requests.exceptions.ProxyError, match="403"):
        clean.session().get("https://example.com/", timeout=10)
    plain = clean.session().get("http://example.com/", timeout=10)
    assert plain.status_code == 403 and "not a Docker Hub host" in plain.text
    assert clean.control.events(after=cursor).events == []
    clean.assert_only_loopback_upstreams()


def test_metrics_scraped_from_the_control_port_parse(clean):
    clean.session().get(f"{REGISTRY}/v2/", timeout=10)
    text = clean.control.metrics()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests_seen = [s for s in families["hub_chaos_requests"].samples if s.name == "hub_chaos_requests_total"]
    assert any(s.labels["role"] == "registry" and s.labels["kind"] == "ping" and s.value >= 1 for s in requests_seen)
    assert {"hub_chaos_faults_fired", "hub_chaos_faults_applied", "hub_chaos_response_body_bytes",
            "hub_chaos_request_duration_seconds", "hub_chaos_faults_active"} <= families.keys()  # fmt: skip


def test_with_a_token_the_control_api_listens_beyond_loopback_and_wants_the_token(tmp_path, upstream):
    token_file = tmp_path / "token"
    token_file.write_text("token-for-the-wire-test-0123456789\n")
    port = free_port()
    extra = ("--set", f"hub_control_token_file={token_file}")
    proxy = Mitmdump(tmp_path, upstream.server_port, extra=extra, control=f"0.0.0.0:{port}")
    with proxy:  # its readiness check reads /healthz, which needs no token
        session = requests.Session()
        session.trust_env = False
        assert session.get(f"http://127.0.0.1:{port}/faults", timeout=5).status_code == 401
        with ControlClient(f"http://127.0.0.1:{port}", token="token-for-the-wire-test-0123456789") as control:
            assert control.list() == []
    assert "token-for-the-wire-test" not in proxy.log_text()


def test_an_option_given_twice_is_one_line_not_a_silent_proxy_without_the_addon(tmp_path):
    argv = [str(MITMDUMP), "-s", str(ADDON), "--listen-host", "127.0.0.1", "-p", "0", "--set", f"confdir={tmp_path}",
            "--set", "hub_control=127.0.0.1:0", "--set", "hub_control=127.0.0.1:1"]  # fmt: skip
    code, output = run_until_exit(argv)
    assert code != 0
    assert "hub-chaos: cannot use hub_control option: Received multiple values for hub_control" in output
    assert "Traceback" not in output


def needs_curl(test):
    """curl is the HTTP/2 client of these tests: `make test` installs it."""

    def checked(*args, **kwargs):
        assert shutil.which("curl"), "curl not found: `make test` installs the Debian package curl"
        return test(*args, **kwargs)

    return functools.wraps(test)(checked)


def _curl_http_version(proxy, url):
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_version}", "--http2", "--max-time", "10",
         "-x", f"http://127.0.0.1:{proxy.port}", "--cacert", str(proxy.confdir / "mitmproxy-ca-cert.pem"), url],
        capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_curl
def test_http2_roles_let_registry_clients_speak_http2_while_the_rest_stays_http1(tmp_path, upstream):
    extra = ("--set", "http2=false", "--set", "hub_http2_roles=registry")
    with Mitmdump(tmp_path, upstream.server_port, extra=extra) as proxy:
        assert _curl_http_version(proxy, f"{REGISTRY}/v2/") == "2"
        assert upstream.seen[-1]["path"] == "/v2/"  # an HTTP/1.1 upstream behind it
        assert _curl_http_version(proxy, "https://auth.docker.io/token") == "1.1"
        [event] = [e for e in proxy.control.events(after=0).events if e["role"] == "registry"]
        assert (event["status"], event["bytes"]) == (200, len(b'{"path": "/v2/"}'))


@needs_curl
def test_without_http2_roles_http2_false_keeps_everyone_on_http1(tmp_path, upstream):
    with Mitmdump(tmp_path, upstream.server_port, extra=("--set", "http2=false")) as proxy:
        assert _curl_http_version(proxy, f"{REGISTRY}/v2/") == "1.1"


@needs_curl
def test_refuse_closes_an_http2_connection_so_the_next_request_meets_the_refused_connect(tmp_path, upstream):
    # Over HTTP/2 a kill resets one stream; an outage must not leave the
    # connection standing. Skipping two matching requests (the CONNECT and the
    # first GET) lets the tunnel open before the fault fires.
    fault = '[{"name": "hub-down", "kind": "refuse", "match": {"roles": ["registry"]}, "trigger": {"after": 2}}]'
    extra = ("--set", "http2=false", "--set", "hub_http2_roles=registry", "--set", f"hub_faults={fault}")
    with Mitmdump(tmp_path, upstream.server_port, extra=extra) as proxy:
        subprocess.run(
            ["curl", "-s", "--http2", "--max-time", "10", "-x", f"http://127.0.0.1:{proxy.port}",
             "--cacert", str(proxy.confdir / "mitmproxy-ca-cert.pem"),
             *(["-o", "/dev/null", f"{REGISTRY}/v2/"] * 3)],
            capture_output=True, timeout=30,
        )
        events = proxy.control.events(after=0).events
        assert [(e["method"], e["status"], e["fault"]) for e in events] == [
            ("GET", 200, None),
            ("GET", None, "hub-down"),  # its stream reset, and its connection closed with it
            ("CONNECT", 502, "hub-down"),  # so the third request needed a new tunnel
        ]


@needs_curl
def test_a_refuse_narrowed_to_some_requests_leaves_an_http2_connection_to_the_others(tmp_path, upstream):
    fault = '[{"name": "no-manifests", "kind": "refuse", "match": {"endpoints": ["manifest"]}}]'
    extra = ("--set", "http2=false", "--set", "hub_http2_roles=registry", "--set", f"hub_faults={fault}")
    with Mitmdump(tmp_path, upstream.server_port, extra=extra) as proxy:
        result = subprocess.run(
            ["curl", "-s", "--http2", "--max-time", "10", "-x", f"http://127.0.0.1:{proxy.port}",
             "--cacert", str(proxy.confdir / "mitmproxy-ca-cert.pem"), "-w", "%{num_connects} ",
             "-o", "/dev/null", f"{REGISTRY}/v2/library/alpine/manifests/3", "-o", "/dev/null", f"{REGISTRY}/v2/"],
            capture_output=True, text=True, timeout=30,
        )
        assert result.stdout.split() == ["1", "0"]  # the second request opened no connection
        events = proxy.control.events(after=0).events
        assert [(e["kind"], e["status"], e["fault"]) for e in events] == [
            ("manifest", None, "no-manifests"),  # its stream reset
            ("ping", 200, None),  # on the same connection, which stayed up
        ]

