"""The lab's blob CDN end to end: real hub, auth service, CDN, mitmdump and
mirror. Blob GETs answer 307 to production.cloudflare.docker.com, the bytes
come from the CDN service, and a fault on role cdn alone breaks blob downloads
while the registry keeps answering."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import requests

from chaos.clients.builtin import BuiltinClient
from chaos.vocab.codes import NETWORK
from chaos.lab.lab import Lab
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference
from chaos.scenario.model import LabSpec, SeedImage, User
from tests.lab_helpers import listening, processes_mentioning

pytestmark = pytest.mark.lab

CDN_HOST = "production.cloudflare.docker.com"
PUBLIC = parse_reference("alpine:3.19")
UNCACHED = parse_reference("nginx:1.25")
PRIVATE = parse_reference("alice/private-app:1.0")
TIMEOUT_S = 10


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
    lab = Lab(spec, root)
    try:
        lab.start()
        yield lab
    finally:
        ports = dict(lab.state.ports)
        lab.stop()
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


def every_redirect_followed(repository):
    def settled(events):
        redirects, downloads = blob_traffic(events, repository)
        return bool(redirects) and {e["reference"] for e in redirects} == {e["reference"] for e in downloads}

    return settled


def assert_blobs_came_from_the_cdn(lab, events, repository):
    redirects, downloads = blob_traffic(events, repository)
    assert redirects and all(e["status"] == 307 and e["bytes"] == 0 for e in redirects)
    assert downloads and all(e["status"] == 200 and e["host"] == CDN_HOST for e in downloads)
    for event in downloads:
        # Every byte of the blob, and the digest it is stored under is theirs.
        data = blob_file(lab, event["reference"]).read_bytes()
        assert event["bytes"] == len(data)
        assert "sha256:" + hashlib.sha256(data).hexdigest() == event["reference"]


def test_direct_pull_from_hub_gets_its_blobs_from_the_cdn(lab, tap):
    result = direct_client(lab).pull(PUBLIC)
    assert result.ok, result.message
    assert result.served_by == "hub"  # the client verified every blob's digest
    events = tap.events_once(every_redirect_followed(PUBLIC.repository))
    assert_blobs_came_from_the_cdn(lab, events, PUBLIC.repository)


def test_pull_through_the_mirror_gets_its_blobs_from_the_cdn(lab, tap):
    client = BuiltinClient(mirror_url=lab.state.mirror_url, proxy_url=lab.state.proxy_url, ca_file=lab.state.ca_file, timeout=TIMEOUT_S)
    result = client.pull(PUBLIC)
    assert result.ok, result.message
    assert result.served_by == "mirror"
    events = tap.events_once(every_redirect_followed(PUBLIC.repository))
    # The mirror (distribution, in Go) followed the redirects itself, through the proxy.
    assert_blobs_came_from_the_cdn(lab, events, PUBLIC.repository)


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
