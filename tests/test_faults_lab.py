"""Faults through the whole lab with the builtin client and the real mirror:
what each does on the wire as a user of the mirror sees it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chaos.clients.builtin import BuiltinClient
from chaos.lab.lab import Lab
from chaos.language.model import LabSpec, SeedImage
from chaos.proxy.control_client import ControlClient
from chaos.vocab.codes import DIGEST_MISMATCH
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import processes_mentioning

pytestmark = pytest.mark.lab

IMAGES = [parse_reference(f"library/img{n}:1") for n in range(4)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults-lab")
    with Lab(LabSpec(images=tuple(SeedImage(ref, 400_000) for ref in IMAGES)), root) as lab:
        yield lab
    assert not processes_mentioning(str(root))


@pytest.fixture
def control(lab):
    with ControlClient(lab.state.control_url) as client:
        client.reset()
        yield client
        client.reset()


def client(lab, *, mirror: bool) -> BuiltinClient:
    return BuiltinClient(
        mirror_url=lab.state.mirror_url if mirror else None,
        proxy_url=lab.state.proxy_url, ca_file=lab.state.ca_file, timeout=10,
    )


def test_corrupt_blob_from_the_cdn_is_a_digest_mismatch_for_the_client(lab, control):
    control.add({"name": "bad-bytes", "kind": "corrupt", "match": {"roles": ["cdn"]}})
    result = client(lab, mirror=False).pull(IMAGES[0])
    assert not result.ok
    assert result.error_code == DIGEST_MISMATCH
    assert "sha256:" in result.message


def test_corrupt_blob_through_the_mirror_is_caught_and_never_cached(lab, control):
    # distribution fetches an uncached blob twice at once (one copy to store,
    # one to stream), so a `first: 1` trigger would race between the two:
    # corrupt every CDN response instead, which makes the outcome certain.
    control.add({"name": "bad-bytes", "kind": "corrupt", "match": {"roles": ["cdn"]}})
    blobs_before = stored_blobs(lab)
    result = client(lab, mirror=True).pull(IMAGES[1])
    assert [(a.endpoint, a.error_code) for a in result.attempts] == [("mirror", DIGEST_MISMATCH), ("hub", DIGEST_MISMATCH)]
    assert not result.ok
    # The mirror verified what it stored: the manifest (served by the registry,
    # not the CDN) is cached, but no corrupted config or layer landed.
    new_blobs = stored_blobs(lab).keys() - blobs_before.keys()
    assert new_blobs and all("layers" in json.loads(stored_blobs(lab)[d].read_bytes()) for d in new_blobs)
    control.reset()
    healed = client(lab, mirror=True).pull(IMAGES[1])
    assert healed.ok and healed.served_by == "mirror"


def stored_blobs(lab) -> dict[str, Path]:
    """The blobs the mirror holds by digest hex (distribution's filesystem layout)."""
    root = Path(lab.state.mirror_storage) / "docker/registry/v2/blobs"
    return {data.parent.name: data for data in root.glob("sha256/*/*/data")}


def test_rate_limit_budget_counts_manifest_gets_not_heads(lab, control):
    control.add({"name": "limit", "kind": "rate-limit", "params": {"limit": 3}, "match": {"roles": ["registry"]}})
    mirror, hub = client(lab, mirror=True), client(lab, mirror=False)
    cursor = control.events().next
    # One GET: the mirror fetches the manifest once...
    assert mirror.pull(IMAGES[3]).served_by == "mirror"
    # ...then revalidates the cached tag with HEADs, which Hub never counts.
    assert all(mirror.pull(IMAGES[3]).ok for _ in range(5))
    # Hub keeps anonymous budgets per machine; the lab's components share 127.0.0.1,
    # so the proxy tells them apart by origin (their listeners) when it knows them:
    # then the client has its own three pulls, else the two the mirror left.
    origins = {event["origin"] for event in control.events(after=cursor).events}
    budget = 3 if origins == {"mirror"} else 2
    results = [hub.pull(IMAGES[2]) for _ in range(budget + 1)]
    assert [r.ok for r in results] == [True] * budget + [False]
    assert results[-1].error_code == "TOOMANYREQUESTS"
    assert "pull rate limit" in results[-1].message
    counters = control.list()[0]["counters"]
    assert counters["applied"] == 1  # only the refused GET


def test_fault_expires_without_any_call(lab, control):
    control.add({"name": "short", "kind": "refuse", "ttl_s": 1})
    assert client(lab, mirror=False).pull(IMAGES[0]).error_code == "NETWORK"
    time.sleep(1.3)
    assert control.list() == []
    assert client(lab, mirror=False).pull(IMAGES[0]).ok
