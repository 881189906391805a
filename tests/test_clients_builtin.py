"""BuiltinClient against in-process fake registries: Docker-daemon mirror
fallback, auth, verification, redirects, timeouts, proxy and CA handling."""

from __future__ import annotations

import re
import time

import pytest

from chaos.clients.builtin import BuiltinClient
from chaos.clients.registry_http import DOCKERD_20_10, DaemonTimings
from chaos.vocab.codes import BAD_RESPONSE, DIGEST_MISMATCH, NETWORK, TIMEOUT
from chaos.vocab.reference import parse_reference
from tests._fake_registry import (
    FakeRegistry,
    ForwardProxy,
    build_image,
    closed_port,
    self_signed_cert,
)

ALPINE = parse_reference("alpine:3.19")
PRIVATE = parse_reference("acme/private:1")
DENIED_MESSAGE = (
    "pull access denied for acme/private, repository does not exist or may require "
    "'docker login': denied: requested access to the resource is denied"
)


@pytest.fixture(scope="module")
def image():
    return build_image("alpine")


@pytest.fixture
def hub(image):
    with FakeRegistry(auth="bearer") as registry:
        registry.add_image("library/alpine", "3.19", image)
        registry.users["alice"] = "s3cret"
        registry.grants["alice"] = {"acme/private"}
        registry.add_image("acme/private", "1", build_image("private"), private=True)
        yield registry


@pytest.fixture
def mirror(image):
    with FakeRegistry() as registry:
        registry.add_image("library/alpine", "3.19", image)
        yield registry


# The daemon's limits and retry schedule, 50 times faster (same shape).
FAST = DaemonTimings(
    ping_s=0.3, token_s=0.3, layer_retry_s=(0.1, 0.2, 0.3, 0.4, 0.5), config_retry_s=(0.005, 0.01, 0.02, 0.04)
)


def client(hub=None, mirror=None, **options) -> BuiltinClient:
    options.setdefault("timeout", 5.0)
    options.setdefault("timings", FAST)
    return BuiltinClient(
        mirror_url=mirror.base_url if mirror else None,
        hub_url=hub.base_url if hub else f"http://127.0.0.1:{closed_port()}",
        **options,
    )


# --------------------------------------------------------------------------- hub and auth


def test_public_pull_from_hub_counts_bytes_and_records_digest(hub, image):
    result = client(hub).pull(ALPINE)
    assert result.ok, result
    assert result.served_by == "hub"
    assert result.digest == image.digest
    assert result.bytes == image.size
    assert result.image == "docker.io/library/alpine:3.19"
    assert [(a.endpoint, a.ok) for a in result.attempts] == [("hub", True)]
    assert result.seconds > 0


def test_a_tag_is_resolved_with_head_then_fetched_by_digest_as_dockerd_does(hub, image):
    # moby v20.10.24 pull_v2.go pullV2Tag: tagService.Get (HEAD), then the manifest
    # by digest; Hub's rate limit never counts the HEAD.
    assert client(hub).pull(ALPINE).ok
    assert [(seen.method, seen.path.rsplit("/", 1)[-1]) for seen in hub.requests_of("manifest")] == [
        ("HEAD", "3.19"), ("GET", image.digest)]


def test_a_failed_head_is_asked_again_with_get_for_the_errors_details(hub):
    result = client(hub).pull(parse_reference("alpine:9.99"))
    assert result.error_code == "MANIFEST_UNKNOWN"
    assert [seen.method for seen in hub.requests_of("manifest")] == ["HEAD", "GET"]


def test_bearer_challenge_fetches_token_for_repository_scope_and_service(hub):
    assert client(hub).pull(ALPINE).ok
    tokens = hub.requests_of("token")
    assert len(tokens) == 1  # cached for the manifest and every blob
    assert tokens[0].query == {"service": "fake.registry", "scope": "repository:library/alpine:pull"}
    assert "Authorization" not in tokens[0].headers  # anonymous
    for seen in hub.requests_of("manifest") + hub.requests_of("blob"):
        assert seen.headers["Authorization"].startswith("Bearer ")


def test_credentials_go_to_hub_realm_never_to_the_mirror(hub, image):
    with FakeRegistry(auth="bearer") as mirror:
        mirror.add_image("library/alpine", "3.19", image)
        mirror.fail("blob", status=500)  # so the pull goes on to hub
        result = client(hub, mirror, credentials=("alice", "s3cret"), blob_attempts=1).pull(ALPINE)
    assert result.ok and result.served_by == "hub"
    assert mirror.requests_of("token") and all(
        "Authorization" not in seen.headers for seen in mirror.requests_of("token")
    )
    assert all(
        not seen.headers.get("Authorization", "").startswith("Basic") for seen in mirror.seen
    )
    hub_token = hub.requests_of("token")[0]
    assert hub_token.headers["Authorization"].startswith("Basic ")
    assert hub_token.query["account"] == "alice"
    assert all(
        not seen.headers.get("Authorization", "").startswith("Basic")
        for seen in hub.seen
        if seen.kind != "token"
    )


def test_anonymous_private_pull_is_denied_with_dockers_message(hub):
    result = client(hub).pull(PRIVATE)
    assert not result.ok
    # The body says UNAUTHORIZED; the challenge's insufficient_scope wins, as in dockerd and skopeo.
    assert result.error_code == "DENIED"
    assert result.message == DENIED_MESSAGE
    assert not hub.requests_of("blob")


def test_logged_in_private_pull_succeeds(hub):
    result = client(hub, credentials=("alice", "s3cret")).pull(PRIVATE)
    assert result.ok, result
    assert result.served_by == "hub"


def test_wrong_password_reports_the_token_servers_answer(hub):
    result = client(hub, credentials=("alice", "wrong")).pull(PRIVATE)
    assert result.error_code == "UNAUTHORIZED"
    assert result.message.startswith(f'Get "{hub.base_url}/v2/acme/private/manifests/1": ')
    assert result.message.endswith("unauthorized: incorrect username or password")


def test_basic_challenge_is_answered_with_credentials(image):
    with FakeRegistry(auth="basic") as hub:
        hub.add_image("acme/private", "1", image, private=True)
        hub.users["alice"] = "s3cret"
        hub.grants["alice"] = {"acme/private"}
        assert client(hub, credentials=("alice", "s3cret")).pull(PRIVATE).ok
        denied = client(hub).pull(PRIVATE)
    assert denied.error_code == "UNAUTHORIZED"
    assert denied.message == DENIED_MESSAGE


def test_unknown_tag_reads_like_docker(hub):
    result = client(hub).pull(parse_reference("alpine:9.99"))
    assert result.error_code == "MANIFEST_UNKNOWN"
    assert result.message == "manifest for alpine:9.99 not found: manifest unknown: manifest unknown"


def test_rate_limit_reports_registry_message(hub):
    message = "You have reached your pull rate limit. You may increase the limit by authenticating."
    hub.fail(
        "manifest",
        status=429,
        body=f'{{"errors":[{{"code":"TOOMANYREQUESTS","message":"{message}"}}]}}'.encode(),
    )
    result = client(hub).pull(ALPINE)
    assert result.error_code == "TOOMANYREQUESTS"
    assert result.message == f"toomanyrequests: {message}"
    assert result.attempts[-1].status == 429


# --------------------------------------------------------------------------- verification


def test_corrupt_layer_is_a_digest_mismatch_naming_the_layer(hub, image):
    layer = image.layer_digests[1]
    hub.corrupt.add(layer)
    result = client(hub).pull(ALPINE)
    assert result.error_code == DIGEST_MISMATCH
    assert result.message == f"filesystem layer verification failed for digest {layer}"
    # Verification failures are not retried, as in the daemon.
    assert len([s for s in hub.requests_of("blob") if s.path.endswith(layer)]) == 1


def test_manifest_pulled_by_digest_must_hash_to_it(hub, image):
    hub.corrupt.add(image.digest)
    result = client(hub).pull(parse_reference(f"alpine@{image.digest}"))
    assert result.error_code == DIGEST_MISMATCH
    assert image.digest in result.message


def test_pull_by_digest_records_that_digest(hub, image):
    result = client(hub).pull(parse_reference(f"alpine@{image.digest}"))
    assert result.ok and result.digest == image.digest


def test_announced_manifest_digest_must_match_the_bytes(hub):
    hub.lying_digest_header = True
    result = client(hub).pull(ALPINE)
    assert result.error_code == DIGEST_MISMATCH


def test_garbage_manifest_is_a_bad_response(hub):
    hub.fail("manifest", status=200, body=b"<html>hello</html>")
    result = client(hub).pull(ALPINE)
    assert result.error_code == BAD_RESPONSE


# --------------------------------------------------------------------------- mirror fallback


def test_mirror_serving_means_hub_is_never_contacted(hub, mirror, image):
    result = client(hub, mirror).pull(ALPINE)
    assert result.ok and result.served_by == "mirror"
    assert result.digest == image.digest
    assert hub.seen == []
    assert [(a.endpoint, a.ok) for a in result.attempts] == [("mirror", True)]


def test_mirror_404_falls_back_to_hub(hub, mirror):
    mirror.manifests.clear()
    result = client(hub, mirror).pull(ALPINE)
    assert result.ok and result.served_by == "hub"
    first, second = result.attempts
    assert (first.endpoint, first.ok, first.status, first.error_code) == (
        "mirror",
        False,
        404,
        "MANIFEST_UNKNOWN",
    )
    assert (second.endpoint, second.ok) == ("hub", True)
    assert mirror.requests_of("ping") and hub.requests_of("ping")


def test_refused_mirror_falls_back_to_hub(hub):
    mirror_url = f"http://127.0.0.1:{closed_port()}"
    result = BuiltinClient(mirror_url=mirror_url, hub_url=hub.base_url, timeout=5, timings=FAST).pull(ALPINE)
    assert result.ok and result.served_by == "hub"
    assert result.attempts[0].error_code == NETWORK
    assert "connection refused" in result.attempts[0].message


def test_mirror_layer_failure_falls_back_to_hub_for_everything(hub, mirror, image):
    mirror.corrupt.add(image.layer_digests[0])
    result = client(hub, mirror).pull(ALPINE)
    assert result.ok and result.served_by == "hub"
    assert result.attempts[0].error_code == DIGEST_MISMATCH
    assert len(hub.requests_of("blob")) == len(image.blobs)


def test_when_both_fail_hubs_error_is_reported(hub, mirror):
    mirror.fail("manifest", status=500)
    hub.fail("manifest", status=503, body=b"upstream connect error")
    result = client(hub, mirror).pull(ALPINE)
    assert not result.ok
    assert result.error_code == BAD_RESPONSE
    assert result.message == "received unexpected HTTP status: 503 Service Unavailable"
    assert [(a.endpoint, a.status) for a in result.attempts] == [("mirror", 500), ("hub", 503)]
    assert result.served_by is None


def test_hub_down_reads_like_dockers_network_error(mirror):
    port = closed_port()
    mirror.manifests.clear()
    result = BuiltinClient(
        mirror_url=mirror.base_url, hub_url=f"http://127.0.0.1:{port}", timeout=5, timings=FAST
    ).pull(ALPINE)
    assert result.error_code == NETWORK
    assert result.message == (
        f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )


def test_connection_closed_without_answer_is_network_eof(hub):
    hub.fail("manifest", close=True)
    result = client(hub).pull(ALPINE)
    assert result.error_code == NETWORK
    # The tag is resolved with a HEAD first, as dockerd 20.10 does.
    assert result.message == f'Head "{hub.base_url}/v2/library/alpine/manifests/3.19": EOF'


def test_layer_cut_short_once_is_resumed_with_a_range_request(hub, image):
    hub.fail("blob", truncate=True, times=1, only=image.layer_digests[-1])
    result = client(hub).pull(ALPINE)
    assert result.ok, result
    blobs = hub.requests_of("blob")
    assert len(blobs) == len(image.blobs) + 1
    (resumed,) = [seen for seen in blobs if "Range" in seen.headers]
    assert re.fullmatch(r"bytes=[1-9]\d*-", resumed.headers["Range"])
    # The bytes already received are not fetched again.
    assert result.bytes == image.size


def test_a_resumed_layer_answered_200_is_fetched_again_from_the_start(hub, image):
    hub.ranges = False
    hub.fail("blob", truncate=True, times=1, only=image.layer_digests[-1])
    result = client(hub).pull(ALPINE)
    assert result.ok, result
    # Cut, then 200 to the Range request (counted as a failed attempt), then a fresh download.
    assert len(hub.requests_of("blob")) == len(image.blobs) + 2


def test_the_config_is_tried_five_times_250ms_apart_doubling_and_said_like_dockerd(hub, image):
    hub.fail("blob", status=500, times=100)
    timings = DaemonTimings(config_retry_s=(0.05, 0.1, 0.2, 0.4), layer_retry_s=(5.0,) * 5)
    started = time.monotonic()
    result = client(hub, timings=timings).pull(ALPINE)
    elapsed = time.monotonic() - started
    assert result.error_code == BAD_RESPONSE
    # Go's retry() reports one more attempt than it made (moby v20.10.24 pull_v2.go).
    assert result.message == (
        "error pulling image configuration: download failed after attempts=6: "
        "received unexpected HTTP status: 500 Internal Server Error"
    )
    config_gets = [s for s in hub.requests_of("blob") if s.path.endswith(image.config_digest)]
    assert len(config_gets) == 5
    assert 0.75 <= elapsed < 3  # 0.05 + 0.1 + 0.2 + 0.4 of waits; the layers' 5 s waits are cut short


def test_a_layer_is_tried_six_times_on_the_daemons_schedule(hub, image):
    layer = image.layer_digests[-1]
    hub.fail("blob", status=503, times=100, only=layer)  # the config and the first layer are served
    result = client(hub).pull(ALPINE)
    assert result.error_code == BAD_RESPONSE
    gets = [s for s in hub.requests_of("blob") if s.path.endswith(layer)]
    assert len(gets) == 6 == DOCKERD_20_10.layer_attempts


@pytest.mark.parametrize("status, code", [(401, "UNAUTHORIZED"), (404, "BLOB_UNKNOWN"), (429, "TOOMANYREQUESTS")])
def test_answers_no_retry_can_change_are_not_retried(hub, image, status, code):
    layer = image.layer_digests[-1]
    body = f'{{"errors":[{{"code":"{code}","message":"x"}}]}}'.encode()
    hub.fail("blob", status=status, times=100, body=body, only=layer)
    result = client(hub).pull(ALPINE)
    assert result.error_code == code
    assert len([s for s in hub.requests_of("blob") if s.path.endswith(layer)]) == 1


def test_the_default_schedule_is_moby_20_10s():
    assert DOCKERD_20_10.layer_retry_s == (5, 10, 15, 20, 25) and DOCKERD_20_10.layer_attempts == 6
    assert DOCKERD_20_10.config_retry_s == (0.25, 0.5, 1, 2) and DOCKERD_20_10.config_attempts == 5
    assert (DOCKERD_20_10.dial_s, DOCKERD_20_10.tls_handshake_s, DOCKERD_20_10.ping_s, DOCKERD_20_10.token_s) == (30, 10, 15, 15)
    assert DOCKERD_20_10.max_concurrent_downloads == 3


# --------------------------------------------------------------------------- platforms


@pytest.fixture
def multiarch_hub(hub):
    arm = build_image("alpine-arm64", arch="arm64", oci=True)
    amd = build_image("alpine-amd64", oci=True)
    hub.add_index(
        "library/alpine",
        "multi",
        [
            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            (amd, {"os": "linux", "architecture": "amd64"}),
        ],
    )
    return hub, arm, amd


@pytest.mark.parametrize("platform, expected", [("linux/amd64", "amd"), ("linux/arm64", "arm")])
def test_platform_is_selected_from_an_index(multiarch_hub, platform, expected):
    hub, arm, amd = multiarch_hub
    wanted, other = (amd, arm) if expected == "amd" else (arm, amd)
    result = client(hub, platform=platform).pull(parse_reference("alpine:multi"))
    assert result.ok, result
    assert result.digest == wanted.digest
    fetched = {seen.path.rsplit("/", 1)[-1] for seen in hub.requests_of("blob")}
    assert fetched == set(wanted.blobs)
    assert not fetched & set(other.blobs)


def test_no_matching_platform_reads_like_docker(multiarch_hub):
    hub, _, _ = multiarch_hub
    result = client(hub, platform="linux/s390x").pull(parse_reference("alpine:multi"))
    assert result.error_code == "MANIFEST_UNKNOWN"
    assert result.message == "no matching manifest for linux/s390x in the manifest list entries"


# --------------------------------------------------------------------------- redirects, timeouts


def test_blob_redirect_to_cdn_does_not_carry_authorization(hub, image):
    with FakeRegistry() as cdn:
        cdn.blobs.update(hub.blobs)
        hub.blob_redirect = cdn.base_url
        result = client(hub).pull(ALPINE)
    assert result.ok, result
    assert len(cdn.requests_of("cdn")) == len(image.blobs)
    assert all("Authorization" not in seen.headers for seen in cdn.seen)
    assert all("Authorization" in seen.headers for seen in hub.requests_of("blob"))


def test_a_manifest_that_never_comes_is_waited_for_until_the_budget_ends(hub):
    # dockerd has no response-header timeout on registry requests: only the
    # pull's own deadline ends the wait, and the result names what it waited for.
    hub.fail("manifest", hang_s=10)
    started = time.monotonic()
    result = client(hub, timeout=1.0).pull(ALPINE)
    elapsed = time.monotonic() - started
    assert result.error_code == TIMEOUT
    assert 1.0 <= elapsed < 2.0
    assert result.message == (
        f'pull alpine:3.19 did not finish within 1.0s (still waiting for an answer to HEAD '
        f'"{hub.base_url}/v2/library/alpine/manifests/3.19")'
    )
    assert [(a.endpoint, a.error_code) for a in result.attempts] == [("hub", TIMEOUT)]


@pytest.mark.parametrize("budget", [1.0, 2.5])
def test_a_mirror_that_never_answers_a_manifest_holds_the_pull_whatever_the_budget(hub, mirror, budget):
    # The daemon waits on the mirror and never falls back to Hub.
    mirror.fail("manifest", hang_s=10)
    result = client(hub, mirror, timeout=budget).pull(ALPINE)
    assert result.error_code == TIMEOUT
    assert [a.endpoint for a in result.attempts] == ["mirror"]
    assert hub.seen == []


@pytest.mark.parametrize("budget", [3.0, 8.0])
def test_the_verdict_does_not_depend_on_the_budget(hub, mirror, budget):
    # Before: the client's read timeout was a quarter of the step's, so a mirror
    # answering after 1.5 s meant "ok via hub" with one budget and "ok via
    # mirror" with another. dockerd has no such limit: it waits for the mirror.
    mirror.fail("manifest", delay_s=1.5, times=1)
    result = client(hub, mirror, timeout=budget).pull(ALPINE)
    assert (result.ok, result.served_by) == (True, "mirror"), result
    assert hub.seen == []


def test_a_body_that_stops_midway_is_ended_by_the_budget(hub, image):
    hub.fail("blob", stall_s=10)
    started = time.monotonic()
    result = client(hub, timeout=1.0).pull(ALPINE)
    assert result.error_code == TIMEOUT
    assert time.monotonic() - started < 2.0


def test_a_retry_the_budget_cannot_wait_for_ends_the_pull_naming_it(hub, image):
    layer = image.layer_digests[-1]
    hub.fail("blob", status=503, times=100, only=layer)
    started = time.monotonic()
    result = client(hub, timeout=1.0, timings=DOCKERD_20_10).pull(ALPINE)
    assert time.monotonic() - started < 2.0
    assert result.error_code == TIMEOUT
    assert f"the retry of layer {layer[:19]} in 5s, after: received unexpected HTTP status: 503" in result.message


def test_a_hung_mirror_ping_falls_back_after_the_daemons_15s_limit(hub, mirror):
    mirror.fail("ping", hang_s=10)
    result = client(hub, mirror, timeout=5).pull(ALPINE)  # FAST: the ping limit is 0.3 s
    assert result.ok and result.served_by == "hub"
    first = result.attempts[0]
    assert (first.endpoint, first.error_code) == ("mirror", TIMEOUT)
    assert first.message == (
        f'Get "{mirror.base_url}/v2/": net/http: request canceled (Client.Timeout exceeded while awaiting headers)'
    )


def test_a_hung_token_request_fails_after_the_daemons_limit_not_the_budget(hub):
    hub.fail("token", hang_s=10)
    started = time.monotonic()
    result = client(hub, timeout=5).pull(ALPINE)
    assert time.monotonic() - started < 2
    assert result.error_code == TIMEOUT
    assert "Client.Timeout exceeded while awaiting headers" in result.message
    assert "/token?" in result.message


def test_a_tls_handshake_that_never_completes_fails_after_the_handshake_limit(tmp_path):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # never speaks TLS
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        hub_url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        timings = DaemonTimings(tls_handshake_s=0.3, ping_s=5)
        started = time.monotonic()
        result = BuiltinClient(mirror_url=None, hub_url=hub_url, timeout=5, timings=timings).pull(ALPINE)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()
    assert result.error_code == TIMEOUT
    assert result.message == f'Get "{hub_url}/v2/": net/http: TLS handshake timeout'
    assert 0.3 <= elapsed < 1.5


def test_mirror_only_never_asks_hub_and_reports_the_mirrors_answer(hub, mirror, image):
    mirror.manifests.clear()
    result = client(hub, mirror, mirror_only=True).pull(ALPINE)
    assert not result.ok and result.error_code == "MANIFEST_UNKNOWN"
    assert hub.seen == []
    (only,) = result.attempts
    assert (only.endpoint, only.status, only.error_code, only.message) == (
        "mirror", 404, "MANIFEST_UNKNOWN", "manifest unknown: manifest unknown"
    )
    mirror.add_image("library/alpine", "3.19", image)
    served = client(hub, mirror, mirror_only=True).pull(ALPINE)
    assert served.ok and served.served_by == "mirror" and served.digest == image.digest


def test_mirror_only_without_a_mirror_is_a_usage_error(hub):
    from chaos.errors import UsageError

    with pytest.raises(UsageError):
        BuiltinClient(mirror_url=None, hub_url=hub.base_url, mirror_only=True)


def test_every_attempt_carries_the_endpoints_own_answer(hub, mirror):
    mirror.fail("manifest", status=500)
    result = client(hub, mirror).pull(ALPINE)
    assert result.ok and result.served_by == "hub"
    first = result.attempts[0]
    assert (first.endpoint, first.ok, first.status, first.error_code, first.message) == (
        "mirror", False, 500, BAD_RESPONSE, "received unexpected HTTP status: 500 Internal Server Error"
    )


def test_requests_use_a_fresh_connection_each_as_dockerd_does(hub):
    assert client(hub).pull(ALPINE).ok
    assert {seen.headers.get("Connection") for seen in hub.seen} == {"close"}


# --------------------------------------------------------------------------- proxy and TLS


def test_unreachable_proxy_fails_hub_but_mirror_traffic_is_direct(hub, mirror):
    proxy_url = f"http://127.0.0.1:{closed_port()}"
    assert client(hub, mirror, proxy_url=proxy_url).pull(ALPINE).served_by == "mirror"
    hub_only = client(hub, proxy_url=proxy_url).pull(ALPINE)
    assert hub_only.error_code == NETWORK
    assert "proxyconnect tcp" in hub_only.message
    assert hub.seen == []


def test_hub_traffic_and_token_realm_go_through_the_proxy(hub, mirror):
    mirror.manifests.clear()
    with ForwardProxy() as proxy:
        result = client(hub, mirror, proxy_url=proxy.url).pull(ALPINE)
    assert result.ok and result.served_by == "hub"
    assert any(target.startswith(f"{hub.base_url}/token?") for target in proxy.targets)
    assert f"{hub.base_url}/v2/library/alpine/manifests/3.19" in proxy.targets
    assert not any(target.startswith(mirror.base_url) for target in proxy.targets)
    assert mirror.seen  # the mirror was asked, directly


def test_hub_tls_is_verified_against_ca_file(tmp_path, image):
    cert, key = self_signed_cert(tmp_path)
    with FakeRegistry(tls=(cert, key)) as hub:
        hub.add_image("library/alpine", "3.19", image)
        untrusted = client(hub).pull(ALPINE)
        trusted = client(hub, ca_file=cert).pull(ALPINE)
    assert untrusted.error_code == NETWORK
    assert "certificate signed by unknown authority" in untrusted.message
    assert trusted.ok, trusted


# --------------------------------------------------------------------------- progress


def test_progress_lines_name_image_blob_and_megabytes(hub, monkeypatch, caplog):
    # Report from the first chunk on (by default only pulls still running after 0.25 s report).
    monkeypatch.setattr("chaos.clients.builtin.PROGRESS_INTERVAL_S", 0.0)
    with caplog.at_level("INFO", logger="chaos.clients.builtin"):
        assert client(hub).pull(ALPINE).ok
    lines = [record.getMessage() for record in caplog.records if record.name == "chaos.clients.builtin"]
    assert lines
    pattern = re.compile(r"^library/alpine:3\.19 (config|layer) sha256:[0-9a-f]{6} \d+\.\d/\d+\.\d MB$")
    assert all(pattern.match(line) for line in lines), lines


def test_bad_platform_is_a_usage_error():
    from chaos.errors import UsageError

    with pytest.raises(UsageError, match="os/architecture"):
        BuiltinClient(mirror_url=None, platform="amd64")
