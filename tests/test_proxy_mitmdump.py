"""The addon inside a real mitmdump, in regular (HTTPS_PROXY) and reverse mode.

Nothing leaves the machine: every Hub host name is routed to an in-test HTTP
upstream on loopback, and the mitmdump log must show no other server connection.
"""

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from chaos.errors import EnvironmentProblem
from chaos.proxy.control_client import ControlClient

pytestmark = pytest.mark.lab

MITMDUMP = Path(sys.executable).with_name("mitmdump")
ADDON = Path(__file__).resolve().parents[1] / "addons" / "hub_chaos.py"
BIG = 5 * 1024 * 1024
REGISTRY = "https://registry-1.docker.io"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    def __init__(self, workdir, upstream_port, mode_args=(), portfile=False):
        self.confdir = workdir / "conf"
        self.log = workdir / "mitmdump.log"
        self.port = free_port()
        # With a portfile the addon picks its own free port and tells us which.
        self.portfile = workdir / "control.port" if portfile else None
        control = "127.0.0.1:0" if portfile else f"127.0.0.1:{free_port()}"
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
        ]  # fmt: skip
        self.control = ControlClient(f"http://{control}", timeout=5)

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

    def session(self):
        session = requests.Session()
        session.trust_env = False
        session.proxies = {"https": f"http://127.0.0.1:{self.port}"}
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
