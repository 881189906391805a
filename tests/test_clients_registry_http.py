"""registry_http: challenge parsing, error translation and one endpoint's
auth dance, against hand-made responses and the in-process fake registry."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from chaos.clients.registry_http import (
    DOCKERD_20_10,
    Challenge,
    DaemonTimings,
    EndpointClient,
    PullDeadline,
    RegistryFailure,
    daemon_like_session,
    failure_from_response,
    parse_challenges,
    read_bounded,
)
from tests._fake_registry import FakeRegistry, build_image, closed_port

# --------------------------------------------------------------------------- challenges


@pytest.mark.parametrize(
    "header, expected",
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
            [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"})],
        ),
        (
            'Bearer realm="https://a/token",service="s",scope="repository:acme/x:pull",'
            'error="insufficient_scope"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://a/token",
                        "service": "s",
                        "scope": "repository:acme/x:pull",
                        "error": "insufficient_scope",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        (
            'Basic realm="r", Bearer realm="https://t", service=s',
            [Challenge("basic", {"realm": "r"}), Challenge("bearer", {"realm": "https://t", "service": "s"})],
        ),
        (
            'Bearer realm="with \\"quotes\\", commas"',
            [Challenge("bearer", {"realm": 'with "quotes", commas'})],
        ),
        ("", []),
    ],
)
def test_parse_challenges(header, expected):
    assert parse_challenges(header) == expected


# --------------------------------------------------------------------------- error answers


def response(status: int, reason: str = "", headers: dict | None = None) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made.reason = reason
    made.headers = CaseInsensitiveDict(headers or {})
    made.url = "https://registry.example/v2/library/alpine/manifests/3.19"
    return made


def test_body_error_code_wins_over_status():
    failure = failure_from_response(
        response(404),
        b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"},'
        b'{"code":"UNKNOWN","message":"ignored"}]}',
        not_found_code="MANIFEST_UNKNOWN",
    )
    assert (failure.code, failure.message) == ("NAME_UNKNOWN", "name unknown: repository name not known")
    assert failure.registry_error and not failure.retriable


def test_insufficient_scope_without_body_is_denied():
    failure = failure_from_response(
        response(401, headers={"WWW-Authenticate": 'Bearer realm="x",error="insufficient_scope"'}),
        b"",
        not_found_code=None,
    )
    assert failure.code == "DENIED" and failure.insufficient_scope
    assert failure.message == "denied: requested access to the resource is denied"


def test_insufficient_scope_beats_the_body_code_as_in_docker():
    failure = failure_from_response(
        response(401, headers={"WWW-Authenticate": 'Bearer realm="x",error="insufficient_scope"'}),
        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
        not_found_code=None,
    )
    assert failure.code == "DENIED" and failure.insufficient_scope


def test_invalid_token_challenge_is_unauthorized_whatever_the_body_says():
    failure = failure_from_response(
        response(401, headers={"WWW-Authenticate": 'Bearer realm="x",error="invalid_token",error_description="expired"'}),
        b'{"errors":[{"code":"DENIED","message":"nope"}]}',
        not_found_code=None,
    )
    assert failure.code == "UNAUTHORIZED" and not failure.insufficient_scope
    assert failure.message == "unauthorized: expired"


def test_404_without_body_uses_the_requests_not_found_code():
    failure = failure_from_response(response(404, "Not Found"), b"nope", not_found_code="BLOB_UNKNOWN")
    assert (failure.code, failure.status) == ("BLOB_UNKNOWN", 404)


def test_plain_5xx_is_a_retriable_bad_response():
    failure = failure_from_response(response(502, "Bad Gateway"), b"<html>", not_found_code=None)
    assert failure.code == "BAD_RESPONSE" and failure.retriable and not failure.registry_error
    assert failure.message == "received unexpected HTTP status: 502 Bad Gateway"


def test_429_without_body_is_toomanyrequests():
    failure = failure_from_response(response(429), b"", not_found_code=None)
    assert failure.code == "TOOMANYREQUESTS" and not failure.retriable


# --------------------------------------------------------------------------- endpoint client


@pytest.fixture
def registry():
    with FakeRegistry(auth="bearer") as fake:
        fake.add_image("library/alpine", "3.19", build_image("alpine", layer_sizes=(100,)))
        fake.users["bob"] = "pw"
        yield fake


def endpoint(fake_or_url, credentials=None, proxy_url=None, budget=5.0, timings=DOCKERD_20_10) -> EndpointClient:
    session = daemon_like_session("hub-chaos tests")
    url = fake_or_url if isinstance(fake_or_url, str) else fake_or_url.base_url
    return EndpointClient(
        session, url, proxy_url=proxy_url, verify=True, credentials=credentials,
        deadline=time.monotonic() + budget, timings=timings,
    )


def test_ping_learns_the_challenge_and_get_presents_a_token(registry):
    client = endpoint(registry, credentials=("bob", "pw"))
    client.ping()
    assert registry.requests_of("token") == []  # nothing fetched before it is needed
    scope = "repository:library/alpine:pull"
    for _ in range(2):
        client.get("/v2/library/alpine/manifests/3.19", scope=scope).close()
    (token,) = registry.requests_of("token")  # cached per scope
    assert token.query == {"service": "fake.registry", "scope": scope, "account": "bob"}
    assert token.headers["Authorization"].startswith("Basic ")
    assert [s.headers.get("Authorization", "")[:7] for s in registry.requests_of("manifest")] == [
        "Bearer ",
        "Bearer ",
    ]


def test_401_without_a_ping_fetches_a_token_and_retries_once(registry):
    client = endpoint(registry)
    client.get("/v2/library/alpine/manifests/3.19", scope="repository:library/alpine:pull").close()
    first, second = registry.requests_of("manifest")
    assert "Authorization" not in first.headers
    assert second.headers["Authorization"].startswith("Bearer ")


def test_401_after_a_token_is_an_error_not_a_loop(registry):
    client = endpoint(registry)
    client.ping()
    with pytest.raises(RegistryFailure) as caught:
        client.get("/v2/acme/secret/manifests/1", scope="repository:acme/secret:pull")
    assert caught.value.insufficient_scope and caught.value.status == 401
    assert len(registry.requests_of("manifest")) == 1
    assert len(registry.requests_of("token")) == 1


def test_failing_token_server_is_reported_under_the_registry_url(registry):
    registry.fail("token", status=503, body=b"down")
    client = endpoint(registry)
    client.ping()
    url = f"{registry.base_url}/v2/library/alpine/manifests/3.19"
    with pytest.raises(RegistryFailure) as caught:
        client.get("/v2/library/alpine/manifests/3.19", scope="repository:library/alpine:pull")
    assert caught.value.code == "BAD_RESPONSE"
    assert caught.value.message == f'Get "{url}": received unexpected HTTP status: 503 Service Unavailable'


def test_token_answer_without_token_is_a_bad_response(registry):
    registry.fail("token", status=200, body=b'{"nothing": 1}')
    client = endpoint(registry)
    client.ping()
    with pytest.raises(RegistryFailure, match="did not include a token") as caught:
        client.get("/v2/library/alpine/manifests/3.19", scope="repository:library/alpine:pull")
    assert caught.value.code == "BAD_RESPONSE"


def test_redirect_keeps_authorization_on_the_same_origin_only(registry):
    registry.blob_redirect = registry.base_url  # same origin: /cdn/ on the registry itself
    client = endpoint(registry)
    client.ping()
    digest = next(iter(registry.blobs))
    client.get(f"/v2/library/alpine/blobs/{digest}", scope="repository:library/alpine:pull").close()
    (cdn,) = registry.requests_of("cdn")
    assert cdn.headers["Authorization"].startswith("Bearer ")


def test_refused_connection_reads_like_go():
    port = closed_port()
    with pytest.raises(RegistryFailure) as caught:
        endpoint(f"http://127.0.0.1:{port}").ping()
    assert caught.value.code == "NETWORK" and caught.value.retriable
    assert caught.value.message == (
        f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )


def test_refused_proxy_reads_like_go(registry):
    port = closed_port()
    with pytest.raises(RegistryFailure) as caught:
        endpoint(registry, proxy_url=f"http://127.0.0.1:{port}").ping()
    assert caught.value.message == (
        f'Get "{registry.base_url}/v2/": proxyconnect tcp: dial tcp 127.0.0.1:{port}: '
        "connect: connection refused"
    )


def test_read_bounded_refuses_oversized_bodies(registry):
    registry.fail("ping", status=200, body=b"x" * 5000)
    answer = requests.get(f"{registry.base_url}/v2/", stream=True, timeout=5)
    with pytest.raises(RegistryFailure, match="larger than 1000 bytes") as caught:
        read_bounded(answer, 1000, proxy_url=None)
    assert caught.value.code == "BAD_RESPONSE"


@pytest.fixture
def misbehaving_proxy():
    """A proxy that answers every CONNECT one way: 502, or 200 then a close."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)  # so the loop notices `stop` promptly
    behaviour = {"mode": "502"}
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.recv(4096)
                if behaviour["mode"] == "502":
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", behaviour
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("mode, reason", [("502", "Bad Gateway"), ("close", "EOF")])
def test_proxy_refusing_the_tunnel_reads_like_go(misbehaving_proxy, mode, reason):
    proxy_url, behaviour = misbehaving_proxy
    behaviour["mode"] = mode
    target = f"https://127.0.0.1:{closed_port()}"  # never reached: the proxy answers
    with pytest.raises(RegistryFailure) as caught:
        endpoint(target, proxy_url=proxy_url).ping()
    assert caught.value.code == "NETWORK"
    assert caught.value.message == f'Get "{target}/v2/": {reason}'


def test_an_answer_that_never_comes_ends_with_the_pulls_deadline_naming_the_request(registry):
    registry.fail("manifest", hang_s=5)
    client = endpoint(registry, budget=0.5)
    client.ping()
    started = time.monotonic()
    with pytest.raises(PullDeadline) as caught:
        client.get("/v2/library/alpine/manifests/3.19", scope="repository:library/alpine:pull", method="HEAD")
    assert time.monotonic() - started < 1.0
    assert caught.value.doing == f'an answer to HEAD "{registry.base_url}/v2/library/alpine/manifests/3.19"'


def test_the_ping_has_the_daemons_own_limit_inside_the_budget(registry):
    registry.fail("ping", hang_s=5)
    client = endpoint(registry, budget=5.0, timings=DaemonTimings(ping_s=0.3))
    started = time.monotonic()
    with pytest.raises(RegistryFailure) as caught:
        client.ping()
    assert 0.3 <= time.monotonic() - started < 1.0
    assert caught.value.code == "TIMEOUT"
    assert caught.value.message == (
        f'Get "{registry.base_url}/v2/": net/http: request canceled (Client.Timeout exceeded while awaiting headers)'
    )


def test_a_head_that_fails_has_its_status_and_no_body_to_read(registry):
    client = endpoint(registry)
    client.ping()
    with pytest.raises(RegistryFailure) as caught:
        client.get("/v2/library/alpine/manifests/9.99", scope="repository:library/alpine:pull", method="HEAD")
    assert caught.value.status == 404
    assert [seen.method for seen in registry.requests_of("manifest")] == ["HEAD"]
