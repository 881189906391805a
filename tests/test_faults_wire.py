"""Every fault kind of this module set, on the wire: a real mitmdump with the addon,
real HTTP clients, and an in-test upstream on loopback.

Timing assertions use generous bounds (the machine has 2 cores shared with other
tests): they check behaviour ("held until removed", "about 500 kB/s"), not speed.
"""

import hashlib
import http.server
import random
import socket
import threading
import time

import pytest
import requests

from chaos.faults.triggers import Trigger, TriggerState
from chaos.proxy.cdn_urls import blob_path
from tests.test_proxy_mitmdump import Mitmdump

pytestmark = pytest.mark.lab

REGISTRY = "https://registry-1.docker.io"
PLAIN = "http://registry-1.docker.io"  # same host through the proxy without TLS: raw-socket friendly
BLOB_SIZE = 2_000_000
BLOB = random.Random(3).randbytes(BLOB_SIZE)
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BLOB_PATH = f"/v2/library/big/blobs/{BLOB_DIGEST}"
MANIFEST_PATH = "/v2/library/big/manifests/1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        # The registry's blob path, and the CDN's (where CdnRedirect sends clients).
        is_blob = self.path == BLOB_PATH or self.path.split("?")[0] == blob_path(BLOB_DIGEST)
        body = BLOB if is_blob else b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # a fault cut the proxy's connection to us: expected

    def log_message(self, *args):
        pass


class Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)


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


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, upstream):
    with Mitmdump(tmp_path_factory.mktemp("wire"), upstream.server_port) as running:
        yield running


@pytest.fixture
def clean(proxy):
    proxy.control.reset()
    yield proxy
    proxy.control.reset()


def plain_session(proxy):
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"http": f"http://127.0.0.1:{proxy.port}"}
    return session


def read_until_broken(response):
    """Read a streamed body; return (bytes received, the exception that ended it or None)."""
    received = bytearray()
    try:
        while chunk := response.raw.read(65536, decode_content=False):
            received += chunk
    except Exception as err:  # noqa: BLE001 - which error a broken body raises is what we look at
        return bytes(received), err
    return bytes(received), None


def in_thread(function):
    """Run `function` in a thread; returns (thread, result dict with 'value'/'error' and 'done_at')."""
    result = {}

    def run():
        try:
            result["value"] = function()
        except Exception as err:  # noqa: BLE001
            result["error"] = err
        result["done_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_bandwidth_paces_a_blob_and_leaves_other_connections_alone(clean):
    clean.control.add({"name": "slow", "kind": "bandwidth", "params": {"rate_kbps": 500},
                       "match": {"endpoints": ["blob"]}})  # fmt: skip
    started = time.monotonic()
    slow, result = in_thread(lambda: clean.session().get(REGISTRY + BLOB_PATH, timeout=30).content)
    time.sleep(1.0)
    quick_started = time.monotonic()
    assert clean.session().get(REGISTRY + MANIFEST_PATH, timeout=10).ok
    quick_s = time.monotonic() - quick_started
    assert slow.is_alive(), "the throttled blob finished within a second: not throttled"
    slow.join(timeout=30)

    assert result["value"] == BLOB
    rate = BLOB_SIZE / (result["done_at"] - started)
    assert 400_000 <= rate <= 600_000, f"{rate:.0f} B/s, wanted 500 000 within 20%"
    assert quick_s < 2.0, f"the unthrottled manifest took {quick_s:.2f} s"
    [fault] = clean.control.list()
    assert fault["counters"] == {"matched": 1, "fired": 1, "applied": 1}


def test_latency_delays_each_matching_response_by_at_least_delay_ms(clean):
    clean.control.add({"name": "slow", "kind": "latency", "params": {"delay_ms": 400, "jitter_ms": 100}})
    session = plain_session(clean)
    for _ in range(2):
        started = time.monotonic()
        assert session.get(PLAIN + MANIFEST_PATH, timeout=10).ok
        assert time.monotonic() - started >= 0.4


def test_blackhole_holds_until_removed_without_blocking_other_flows(clean):
    clean.control.add({"name": "hole", "kind": "blackhole", "match": {"endpoints": ["manifest"]}})
    held, result = in_thread(lambda: plain_session(clean).get(PLAIN + MANIFEST_PATH, timeout=30))
    time.sleep(1.0)
    started = time.monotonic()
    assert plain_session(clean).get(PLAIN + "/v2/", timeout=10).ok
    assert time.monotonic() - started < 2.0
    assert held.is_alive(), "a blackholed request was answered"

    removed_at = time.monotonic()
    clean.control.remove("hole")
    held.join(timeout=10)
    assert isinstance(result.get("error"), requests.ConnectionError), result
    assert result["done_at"] - removed_at < 5.0


def test_truncate_sends_the_first_bytes_then_closes(clean):
    clean.control.add({"name": "cut", "kind": "truncate", "params": {"after_bytes": 1000}})
    response = clean.session().get(REGISTRY + BLOB_PATH, timeout=10, stream=True)
    assert response.headers["Content-Length"] == str(BLOB_SIZE)
    received, error = read_until_broken(response)
    assert received == BLOB[:1000]
    assert "IncompleteRead" in repr(error)


def test_truncate_by_fraction_of_content_length(clean):
    clean.control.add({"name": "cut", "kind": "truncate", "params": {"fraction": 0.25}})
    response = clean.session().get(REGISTRY + BLOB_PATH, timeout=10, stream=True)
    received, error = read_until_broken(response)
    assert received == BLOB[: BLOB_SIZE // 4] and error is not None


def test_corrupt_keeps_the_length_and_breaks_the_digest(clean):
    clean.control.add({"name": "rot", "kind": "corrupt", "match": {"endpoints": ["blob"]}})
    body = clean.session().get(REGISTRY + BLOB_PATH, timeout=10).content
    assert len(body) == BLOB_SIZE
    assert "sha256:" + hashlib.sha256(body).hexdigest() != BLOB_DIGEST
    assert [i for i in range(BLOB_SIZE) if body[i] != BLOB[i]] == [BLOB_SIZE // 2]


def test_stall_sends_some_bytes_then_nothing_until_removed(clean):
    clean.control.add({"name": "hang", "kind": "stall", "params": {"after_bytes": 1000}})
    response = clean.session().get(REGISTRY + BLOB_PATH, timeout=30, stream=True)
    reader, result = in_thread(lambda: read_until_broken(response))
    time.sleep(1.5)
    assert reader.is_alive(), "a stalled body ended by itself"

    clean.control.remove("hang")
    reader.join(timeout=10)
    received, error = result["value"]
    assert received == BLOB[:1000] and error is not None


def test_stall_ms_bounds_the_stall(clean):
    clean.control.add({"name": "hang", "kind": "stall", "params": {"after_bytes": 10, "stall_ms": 500}})
    started = time.monotonic()
    response = clean.session().get(REGISTRY + BLOB_PATH, timeout=30, stream=True)
    received, error = read_until_broken(response)
    assert received == BLOB[:10] and error is not None
    assert 0.5 <= time.monotonic() - started < 10


def raw_get(proxy, path, timeout=10):
    """GET through the proxy on a raw socket: (bytes received, the socket error or None)."""
    received = b""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as sock:
        sock.sendall(f"GET {PLAIN}{path} HTTP/1.1\r\nHost: registry-1.docker.io\r\n\r\n".encode())
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as err:
            return received, err
    return received, None


def test_reset_after_bytes_aborts_with_a_tcp_rst(clean):
    clean.control.add({"name": "rst", "kind": "reset", "params": {"after_bytes": 1000}})
    received, error = raw_get(clean, BLOB_PATH)
    assert isinstance(error, ConnectionResetError), (error, received[:200])
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) <= 1000


def test_reset_before_any_byte_by_default(clean):
    clean.control.add({"name": "rst", "kind": "reset"})
    received, error = raw_get(clean, MANIFEST_PATH)
    assert received == b"" and isinstance(error, ConnectionResetError)


def outcomes(proxy, count):
    session = plain_session(proxy)
    results = []
    for _ in range(count):
        try:
            results.append(session.get(PLAIN + MANIFEST_PATH, timeout=10).ok)
        except requests.ConnectionError:
            results.append(False)
    return results


def test_probability_with_a_seed_is_reproducible(clean):
    spec = {"name": "flaky", "kind": "reset", "trigger": {"probability": 0.5, "seed": 7}}
    state = TriggerState(Trigger(probability=0.5, seed=7), added_at=0)
    expected = [not state.decide(0) for _ in range(12)]
    assert True in expected and False in expected  # the seed gives a mixed sequence

    clean.control.add(spec)
    assert outcomes(clean, 12) == expected
    clean.control.update("flaky", spec)  # starts the fault afresh: same seed, same decisions
    assert outcomes(clean, 12) == expected


def test_first_two_applies_exactly_twice(clean):
    clean.control.add({"name": "twice", "kind": "reset", "trigger": {"first": 2}})
    assert outcomes(clean, 5) == [False, False, True, True, True]
    [fault] = clean.control.list()
    assert fault["counters"] == {"matched": 5, "fired": 2, "applied": 2}


def test_expiry_clears_a_fault_without_any_call(clean):
    clean.control.add({"name": "brief", "kind": "reset", "ttl_s": 1})
    assert outcomes(clean, 1) == [False]
    time.sleep(1.2)
    assert outcomes(clean, 1) == [True]


def test_expiry_releases_a_blackholed_request(clean):
    clean.control.add({"name": "brief", "kind": "blackhole", "ttl_s": 1.5})
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        plain_session(clean).get(PLAIN + MANIFEST_PATH, timeout=20)
    assert 1.0 <= time.monotonic() - started < 10


def test_removing_a_bandwidth_fault_lets_a_throttled_download_finish_at_full_speed(clean):
    # At 1 kB/s the 2 MB blob would take over half an hour: the throttle must not outlive the fault.
    clean.control.add({"name": "slow", "kind": "bandwidth", "params": {"rate_kbps": 1}, "match": {"endpoints": ["blob"]}})
    slow, result = in_thread(lambda: clean.session().get(REGISTRY + BLOB_PATH, timeout=60).content)
    time.sleep(1.5)
    assert slow.is_alive(), "the throttled blob finished: not throttled"
    removed_at = time.monotonic()
    clean.control.remove("slow")
    slow.join(timeout=30)
    assert result.get("value") == BLOB, result
    assert result["done_at"] - removed_at < 5
    assert clean.control.health()["in_flight"] == 0


def test_an_expired_bandwidth_fault_lets_go_without_any_call(clean):
    clean.control.add({"name": "slow", "kind": "bandwidth", "params": {"rate_kbps": 1}, "ttl_s": 2})
    started = time.monotonic()
    body = clean.session().get(REGISTRY + BLOB_PATH, timeout=60).content
    assert body == BLOB
    assert time.monotonic() - started < 10  # expiry at 2 s, then full speed
    assert clean.control.list() == []


def wait_until_quiet(proxy, deadline_s=10):
    """Until no request is in flight: every event a client caused is in the tap."""
    deadline = time.monotonic() + deadline_s
    while proxy.control.health()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.control.health()["in_flight"] == 0


@pytest.fixture(scope="module")
def cdn_proxy(tmp_path_factory, upstream):
    workdir = tmp_path_factory.mktemp("wire-cdn")
    secret = workdir / "cdn-secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    extra = ("--set", f"hub_cdn_secret_file={secret}")
    with Mitmdump(workdir, upstream.server_port, extra=extra) as running:
        running.control.reset()
        yield running
        running.control.reset()


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "corrupt"},
        {"kind": "truncate", "params": {"after_bytes": 10}},
        {"kind": "stall", "params": {"after_bytes": 10, "stall_ms": 200}},
        {"kind": "bandwidth", "params": {"rate_kbps": 500}},
    ],
)
def test_body_faults_on_blobs_act_on_the_cdn_download_and_count_only_it(cdn_proxy, spec):
    # The registry's answer is a clean, empty 307: nothing of it to corrupt or count (issue 10).
    cdn_proxy.control.reset()
    cursor = cdn_proxy.control.health()["last_event"]
    cdn_proxy.control.add({"name": "f", **spec, "match": {"endpoints": ["blob"]}})
    session = cdn_proxy.session()
    redirect = session.get(REGISTRY + BLOB_PATH, timeout=10, allow_redirects=False)
    assert (redirect.status_code, redirect.content) == (307, b"")
    [fault] = cdn_proxy.control.list()
    assert fault["counters"] == {"matched": 1, "fired": 1, "applied": 0}
    response = session.get(redirect.headers["Location"], timeout=30, stream=True)
    received, _ = read_until_broken(response)
    if spec["kind"] == "bandwidth":
        assert received == BLOB
    else:
        assert received != BLOB
    [fault] = cdn_proxy.control.list()
    assert fault["counters"] == {"matched": 2, "fired": 2, "applied": 1}
    wait_until_quiet(cdn_proxy)
    events = cdn_proxy.control.events(after=cursor).events
    cut = spec["kind"] in ("truncate", "stall")  # the connection is closed under the client: no status
    assert [(e["role"], e["status"], e["fault"]) for e in events] == [
        ("registry", 307, None),
        ("cdn", None if cut else 200, "f"),
    ]
    cdn_proxy.control.reset()


def test_a_resumed_download_is_redirected_to_the_cdn_and_keeps_its_range(cdn_proxy):
    cdn_proxy.control.reset()
    cursor = cdn_proxy.control.health()["last_event"]
    session = cdn_proxy.session()
    redirect = session.get(REGISTRY + BLOB_PATH, headers={"Range": "bytes=100-"}, timeout=10, allow_redirects=False)
    assert redirect.status_code == 307 and "cloudflare.docker.com" in redirect.headers["Location"]
    wait_until_quiet(cdn_proxy)  # this upstream ignores the probe's Range: its whole blob is swallowed first
    [event] = cdn_proxy.control.events(after=cursor).events
    assert (event["kind"], event["status"], event["bytes"]) == ("blob", 307, 0)
