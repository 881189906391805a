"""The lab's blob CDN end to end: real hub, auth service, CDN, mitmdump and
mirror. Blob GETs answer 307 to production.cloudflare.docker.com, the bytes
come from the CDN service, and a fault on role cdn alone breaks blob downloads
while the registry keeps answering. Also the launchers of the CDN and of the
fault proxy that signs its URLs, and that bench/ starts the very same ones."""

from __future__ import annotations

import hashlib
import stat
import sys
import time
from pathlib import Path

import pytest
import requests

from chaos.clients.builtin import BuiltinClient
from chaos.lab.components import proxy as lab_proxy
from chaos.lab.components.cdn import blob_cdn, write_secret
from chaos.lab.components.launch import INHERITED_ENV
from chaos.lab.components.proxy import ADDON, PROXY_TUNING, TRANSFER_TUNING, fault_proxy
from chaos.lab.lab import Lab
from chaos.language.model import LabSpec, SeedImage, User
from chaos.proxy.control_client import ControlClient
from chaos.shipped import addon_path
from chaos.vocab.codes import NETWORK
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import listening, processes_mentioning

CDN_HOST = "production.cloudflare.docker.com"
PUBLIC = parse_reference("alpine:3.19")
UNCACHED = parse_reference("nginx:1.25")
PRIVATE = parse_reference("alice/private-app:1.0")
TIMEOUT_S = 10


ROOT = Path(__file__).resolve().parents[1]


# -- launchers ---------------------------------------------------------------------


def test_cdn_launcher_serves_the_hub_storage_with_the_shared_secret(tmp_path):
    launch = blob_cdn(port=5300, storage=tmp_path / "hub" / "storage", secret_file=tmp_path / "cdn-secret",
                      log_path=tmp_path / "cdn.log")
    assert (launch.name, launch.url) == ("cdn", "http://127.0.0.1:5300")
    assert launch.argv == (
        sys.executable, "-m", "chaos.lab.cdn_service", "--storage", str(tmp_path / "hub" / "storage"),
        "--secret-file", str(tmp_path / "cdn-secret"), "--host", "127.0.0.1", "--port", "5300",
    )  # fmt: skip
    assert set(launch.env) <= set(INHERITED_ENV)
    logged = blob_cdn(port=5300, storage=tmp_path, secret_file=tmp_path / "s", log_path=tmp_path / "cdn.log",
                      request_log=tmp_path / "requests.log")
    assert logged.argv[-2:] == ("--log", str(tmp_path / "requests.log"))


def test_the_cdn_secret_is_fresh_and_readable_by_its_owner_only(tmp_path):
    first = write_secret(tmp_path / "cdn-secret").read_text()
    second = write_secret(tmp_path / "cdn-secret").read_text()
    assert first != second and len(second.strip()) == 64
    assert stat.S_IMODE((tmp_path / "cdn-secret").stat().st_mode) == 0o600


def lab_proxy_launch(tmp_path, **overrides):
    options = {
        "mitmdump": "/venv/bin/mitmdump", "port": 5400, "control_port": 5401, "confdir": tmp_path / "proxy",
        "routes": {"registry": "http://127.0.0.1:1", "auth": "http://127.0.0.1:2", "cdn": "http://127.0.0.1:3"},
        "cdn_secret_file": tmp_path / "cdn-secret", "log_path": tmp_path / "proxy.log",
    }
    return fault_proxy(**(options | overrides))


def test_proxy_launcher_runs_the_addon_with_the_lab_tuning_and_routes(tmp_path):
    launch = lab_proxy_launch(tmp_path)
    assert (launch.name, launch.url) == ("proxy", "http://127.0.0.1:5400")
    assert launch.argv == (
        "/venv/bin/mitmdump", "--set", "termlog_verbosity=alert", "--set", "flow_detail=0",
        "--listen-host", "127.0.0.1", "--listen-port", "5400",
        "--set", f"confdir={tmp_path / 'proxy'}",
        "--set", "connection_strategy=lazy",
        "--set", "stream_large_bodies=256k",
        "--set", "http2=false",
        "-s", str(addon_path()),
        "--set", "hub_http2_roles=registry,auth",
        "--set", "hub_routes=registry=http://127.0.0.1:1,auth=http://127.0.0.1:2,cdn=http://127.0.0.1:3",
        "--set", f"hub_cdn_secret_file={tmp_path / 'cdn-secret'}",
        "--set", "hub_control=127.0.0.1:5401",
    )  # fmt: skip
    assert set(launch.env) <= set(INHERITED_ENV)
    assert lab_proxy.ca_file(tmp_path / "proxy") == tmp_path / "proxy" / "mitmproxy-ca-cert.pem"


def test_proxy_launcher_relays_tunnels_unopened_only_to_upstreams_of_its_own_ca(tmp_path):
    own = lab_proxy_launch(tmp_path, upstream_ca=tmp_path / "proxy" / "mitmproxy-ca-cert.pem")
    at = own.argv.index(f"ssl_verify_upstream_trusted_ca={tmp_path / 'proxy' / 'mitmproxy-ca-cert.pem'}")
    assert own.argv[at - 1:at + 3] == ("--set", own.argv[at], "--set", "hub_passthrough=true")
    # Another CA's upstreams: clients trusting this proxy would not trust them, so intercept.
    other = lab_proxy_launch(tmp_path, upstream_ca=tmp_path / "lab-ca.pem")
    assert f"ssl_verify_upstream_trusted_ca={tmp_path / 'lab-ca.pem'}" in other.argv
    assert "hub_passthrough=true" not in other.argv


def test_proxy_launcher_without_a_cdn_secret_sets_none(tmp_path):
    launch = lab_proxy_launch(tmp_path, cdn_secret_file=None, routes={"registry": "https://127.0.0.1:1"})
    assert not [arg for arg in launch.argv if arg.startswith("hub_cdn_secret_file")]
    assert "hub_routes=registry=https://127.0.0.1:1" in launch.argv


@pytest.fixture
def bench_stack(tmp_path, monkeypatch):
    """bench/_stack.Stack recording what it would start instead of starting it."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _stack

    stack = _stack.Stack(tmp_path / "bench")
    started = []

    def record(launch):
        started.append(launch)
        return launch.process()

    monkeypatch.setattr(stack, "start", record)
    return stack, started


def test_bench_starts_the_lab_fault_proxy_with_its_own_extras_after_it(tmp_path, bench_stack):
    stack, started = bench_stack
    proxy = stack.fault_proxy("hubchaos", routes={"registry": "https://127.0.0.1:1", "cdn": "http://127.0.0.1:3"},
                              upstream_ca=tmp_path / "hub-ca.pem", cdn_secret_file=tmp_path / "cdn-secret",
                              extra=("--set", "http2=true"))
    (launch,) = started
    port, control_port = int(launch.url.rsplit(":", 1)[1]), int(proxy.control_url.rsplit(":", 1)[1])
    same_as_lab = lab_proxy_launch(
        tmp_path, mitmdump=lab_proxy.mitmdump_binary(), port=port, control_port=control_port,
        confdir=tmp_path / "bench" / "hubchaos", routes={"registry": "https://127.0.0.1:1", "cdn": "http://127.0.0.1:3"},
    )
    extras = ("--set", f"ssl_verify_upstream_trusted_ca={tmp_path / 'hub-ca.pem'}", "--set", "http2=true")
    assert launch.argv == same_as_lab.argv + extras
    assert launch.env == same_as_lab.env
    assert proxy.ca_file == tmp_path / "bench" / "hubchaos" / "mitmproxy-ca-cert.pem"


def test_bench_profiles_the_same_proxy_command_line(tmp_path, bench_stack):
    stack, started = bench_stack
    stack.fault_proxy("prof", routes={"registry": "https://127.0.0.1:1"}, upstream_ca=tmp_path / "ca.pem",
                      cdn_secret_file=None, profile_to=tmp_path / "out.prof")
    (launch,) = started
    assert launch.argv[:5] == (sys.executable, "-m", "cProfile", "-o", str(tmp_path / "out.prof"))
    assert launch.argv[5] == lab_proxy.mitmdump_binary()
    assert launch.argv[-2:] == ("--set", f"ssl_verify_upstream_trusted_ca={tmp_path / 'ca.pem'}")
    assert "-s" in launch.argv and str(ADDON) in launch.argv


def test_bench_plain_mitmdump_keeps_the_lab_transfer_tuning_but_no_addon(tmp_path, bench_stack):
    stack, started = bench_stack
    stack.plain_mitmdump("reverse", mode="reverse:https://127.0.0.1:1", upstream_ca=tmp_path / "ca.pem")
    (launch,) = started
    argv = launch.argv
    assert argv[0] == lab_proxy.mitmdump_binary()
    assert PROXY_TUNING == ("--set", "connection_strategy=lazy") + TRANSFER_TUNING
    start = argv.index(TRANSFER_TUNING[1]) - 1
    assert argv[start:start + len(TRANSFER_TUNING)] == TRANSFER_TUNING
    assert "connection_strategy=lazy" not in argv and "-s" not in argv
    assert launch.url.startswith("https://127.0.0.1:")


def test_bench_cdn_is_the_lab_cdn_with_a_request_log(tmp_path, bench_stack):
    stack, started = bench_stack
    url, secret_file = stack.cdn(tmp_path / "storage")
    (launch,) = started
    port = int(url.rsplit(":", 1)[1])
    lab_cdn = blob_cdn(port=port, storage=tmp_path / "storage", secret_file=secret_file, log_path=launch.log_path)
    assert launch.argv == lab_cdn.argv + ("--log", str(tmp_path / "bench" / "logs" / "cdn-requests.log"))
    assert secret_file.read_text().strip()


# -- the lab's CDN end to end ------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdn-lab")
    spec = LabSpec(
        users=(User("alice", "wonderland"),),
        images=(
            SeedImage(PUBLIC, 300_000),
            SeedImage(UNCACHED, 200_000),
            SeedImage(PRIVATE, 100_000, private=True),
        ),
    )
    with Lab(spec, root) as lab:
        ports = dict(lab.state.ports)
        yield lab
    # Nothing left behind: no process mentioning the lab folder, no port listening.
    assert not processes_mentioning(str(root))
    assert not listening(ports.values())


@pytest.fixture
def tap(lab):
    with ControlClient(lab.state.control_url, timeout=TIMEOUT_S) as control:
        yield Tap(control)


class Tap:
    """Events recorded after the fixture was made, read with the tap's cursor."""

    def __init__(self, control: ControlClient):
        self.control = control
        self.cursor = self._drain(0)[1]

    def _drain(self, cursor):
        events = []
        while True:
            page = self.control.events(after=cursor)
            events += page.events
            if page.next == cursor:
                return events, cursor
            cursor = page.next

    def events(self):
        return self._drain(self.cursor)[0]

    def events_once(self, settled):
        """The events once settled(events) holds: the proxy records a flow after
        its last byte went out, so a client can finish before its event exists."""
        deadline = time.monotonic() + TIMEOUT_S
        while not settled(events := self.events()):
            assert time.monotonic() < deadline, f"tap never settled: {events}"
            time.sleep(0.05)
        return events


def blob_file(lab: Lab, digest: str) -> Path:
    hex_digest = digest.split(":", 1)[1]
    return lab.paths.hub_storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


def direct_client(lab: Lab, **kwargs) -> BuiltinClient:
    return BuiltinClient(mirror_url=None, proxy_url=lab.state.proxy_url, ca_file=lab.state.ca_file, timeout=TIMEOUT_S, **kwargs)


def blob_traffic(events, repository):
    """`repository`'s blob GETs to the registry, and the CDN downloads of those blobs.

    Scoped by repository and digest because the mirror stores a blob with a
    second, background download that may land in a later test's window."""
    redirects = [e for e in events if (e["role"], e["kind"], e["method"], e["repository"]) == ("registry", "blob", "GET", repository)]
    digests = {e["reference"] for e in redirects}
    downloads = [e for e in events if (e["role"], e["kind"], e["method"]) == ("cdn", "blob", "GET") and e["reference"] in digests]
    return redirects, downloads


def relayed(events):
    """CDN tunnels the proxy relayed unopened (no fault could match them): bytes and times, no paths."""
    return [e for e in events if e["role"] == "cdn" and e["tunnel"] is not None]


def every_redirect_followed(lab, repository, intercepted):
    def settled(events):
        redirects, downloads = blob_traffic(events, repository)
        if not redirects:
            return False
        wanted = {e["reference"] for e in redirects}
        if intercepted:
            return wanted == {e["reference"] for e in downloads}
        # Relayed: the tunnels carried at least every redirected blob (and TLS around them).
        return sum(e["bytes"] for e in relayed(events)) >= sum(blob_file(lab, d).stat().st_size for d in wanted)

    return settled


def assert_blobs_came_from_the_cdn(lab, events, repository, intercepted):
    redirects, downloads = blob_traffic(events, repository)
    assert redirects and all(e["status"] == 307 and e["bytes"] == 0 for e in redirects)
    if not intercepted:
        # No fault could match the CDN: its tunnels went through unopened, one event per
        # exchange, counted as blob bytes from upstream (what from_cache looks at).
        tunnels = relayed(events)
        assert tunnels and not downloads
        assert all((e["method"], e["status"], e["host"], e["fault"]) == ("CONNECT", 200, CDN_HOST, None) for e in tunnels)
        wanted = {e["reference"] for e in redirects}
        assert sum(e["bytes"] for e in tunnels) >= sum(blob_file(lab, digest).stat().st_size for digest in wanted)
        return
    assert downloads and all(e["status"] == 200 and e["host"] == CDN_HOST for e in downloads)
    for event in downloads:
        # Every byte of the blob, and the digest it is stored under is theirs.
        data = blob_file(lab, event["reference"]).read_bytes()
        assert event["bytes"] == len(data)
        assert "sha256:" + hashlib.sha256(data).hexdigest() == event["reference"]


@pytest.fixture(params=["relayed", "intercepted"])
def cdn_mode(request, tap):
    """Without a fault the CDN's tunnels are relayed unopened; a fault that could
    match the CDN (here one that only adds a millisecond) makes the proxy open them."""
    if request.param == "intercepted":
        tap.control.add({"name": "cdn-watched", "kind": "latency", "params": {"delay_ms": 1}, "match": {"roles": ["cdn"]}})
    yield request.param == "intercepted"
    tap.control.reset()


@pytest.mark.lab
def test_direct_pull_from_hub_gets_its_blobs_from_the_cdn(lab, tap, cdn_mode):
    result = direct_client(lab).pull(PUBLIC)
    assert result.ok, result.message
    assert result.served_by == "hub"  # the client verified every blob's digest
    events = tap.events_once(every_redirect_followed(lab, PUBLIC.repository, cdn_mode))
    assert_blobs_came_from_the_cdn(lab, events, PUBLIC.repository, cdn_mode)


@pytest.mark.lab
def test_pull_through_the_mirror_gets_its_blobs_from_the_cdn(lab, tap, cdn_mode):
    client = BuiltinClient(mirror_url=lab.state.mirror_url, proxy_url=lab.state.proxy_url, ca_file=lab.state.ca_file, timeout=TIMEOUT_S)
    repository = PUBLIC if not cdn_mode else UNCACHED  # each case a cold pull of its own
    result = client.pull(repository)
    assert result.ok, result.message
    assert result.served_by == "mirror"
    events = tap.events_once(every_redirect_followed(lab, repository.repository, cdn_mode))
    # The mirror (distribution, in Go) followed the redirects itself, through the proxy.
    assert_blobs_came_from_the_cdn(lab, events, repository.repository, cdn_mode)


@pytest.mark.lab
def test_private_blob_without_a_token_still_gets_the_registry_challenge(lab, tap):
    layers = lab.paths.hub_storage / "docker/registry/v2/repositories/alice/private-app/_layers/sha256"
    digest = "sha256:" + next(layers.iterdir()).name
    session = requests.Session()
    session.trust_env = False
    try:
        response = session.get(
            f"https://registry-1.docker.io/v2/alice/private-app/blobs/{digest}",
            proxies={"https": lab.state.proxy_url}, verify=lab.state.ca_file,
            allow_redirects=False, timeout=TIMEOUT_S,
        )
    finally:
        session.close()
    assert response.status_code == 401
    assert 'scope="repository:alice/private-app:pull"' in response.headers["WWW-Authenticate"]
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    events = tap.events_once(lambda events: blob_traffic(events, PRIVATE.repository)[0])
    redirects, downloads = blob_traffic(events, PRIVATE.repository)
    # The tap says what the client got: the GET's 401 with its body, no redirect.
    assert [(e["status"], e["bytes"] > 0) for e in redirects] == [(401, True)] and not downloads


@pytest.mark.lab
def test_cdn_down_fails_blob_downloads_with_network_while_manifests_work(lab, tap):
    tap.control.add({"name": "cdn-down", "kind": "refuse", "match": {"roles": ["cdn"]}})
    try:
        result = direct_client(lab, blob_attempts=1).pull(UNCACHED)
    finally:
        tap.control.remove("cdn-down")
    assert not result.ok
    assert result.error_code == NETWORK
    assert CDN_HOST in result.message
    events = tap.events_once(lambda events: any(e["fault"] == "cdn-down" for e in events))
    mine = [e for e in events if e["repository"] == UNCACHED.repository]
    manifests = [e for e in mine if e["kind"] == "manifest"]
    assert manifests and all(e["status"] == 200 and e["fault"] is None for e in manifests)
    redirects, downloads = blob_traffic(events, UNCACHED.repository)
    assert redirects and all(e["status"] == 307 and e["fault"] is None for e in redirects)
    assert not [e for e in downloads if e["status"] == 200]
    refused = [e for e in events if e["fault"] == "cdn-down"]
    assert all(e["role"] == "cdn" for e in refused)
