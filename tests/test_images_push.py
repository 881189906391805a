from __future__ import annotations

import hashlib
import http.server
import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from chaos.images.push import (
    PushError,
    RegistryHTTPError,
    RegistryUnreachable,
    push_image,
    upload_url,
)
from chaos.images.synth import SyntheticIndex, build_image, build_index
from chaos.vocab.codes import BAD_RESPONSE, DIGEST_MISMATCH, NETWORK, TIMEOUT
from tests._registry_fixture import free_port, pull_through_mirror, registry  # noqa: F401

KIB = 1024
SKOPEO_DEADLINE_S = 60
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def get_manifest(base_url: str, repository: str, reference: str) -> requests.Response:
    response = requests.get(
        f"{base_url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT},
        timeout=10,
    )
    response.raise_for_status()
    return response


def get_blob_sha256(base_url: str, repository: str, digest: str) -> str:
    response = requests.get(f"{base_url}/v2/{repository}/blobs/{digest}", timeout=10)
    response.raise_for_status()
    return "sha256:" + hashlib.sha256(response.content).hexdigest()


def assert_image_stored(base_url: str, repository: str, reference: str, image) -> None:
    response = get_manifest(base_url, repository, reference)
    assert response.content == image.manifest.data
    assert response.headers["Content-Type"] == image.manifest.media_type
    assert response.headers["Docker-Content-Digest"] == image.manifest.digest
    for blob in image.blobs:
        assert get_blob_sha256(base_url, repository, blob.digest) == blob.digest


def skopeo(*args: str, policy: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["skopeo", "--policy", str(policy), *args],
        capture_output=True,
        text=True,
        timeout=SKOPEO_DEADLINE_S,
        start_new_session=True,
        check=False,
    )


@pytest.fixture
def policy(tmp_path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


@pytest.mark.lab
@pytest.mark.parametrize("media", ["docker", "oci"])
def test_pushed_image_reads_back_with_the_same_digests(registry, media):
    image = build_image("library/single", "1", 200 * KIB, seed=media, media=media)
    digest = push_image(registry.base_url, f"library/single-{media}", "1", image)
    assert digest == image.manifest.digest
    assert_image_stored(registry.base_url, f"library/single-{media}", "1", image)


@pytest.mark.lab
@pytest.mark.parametrize("media", ["docker", "oci"])
def test_pushed_index_and_its_children_read_back(registry, media):
    index = build_index("library/multi", "1", 100 * KIB, seed=media, media=media)
    repository = f"library/multi-{media}"
    digest = push_image(registry.base_url, repository, "1", index)
    assert digest == index.index.digest
    response = get_manifest(registry.base_url, repository, "1")
    assert response.content == index.index.data
    assert response.headers["Docker-Content-Digest"] == index.index.digest
    for child in index.images:
        assert_image_stored(registry.base_url, repository, child.manifest.digest, child)


@pytest.mark.lab
def test_second_push_uploads_no_blob_and_returns_the_same_digest(registry):
    image = build_image("library/twice", "1", 100 * KIB)
    first = push_image(registry.base_url, "library/twice", "1", image)
    messages: list[str] = []
    second = push_image(registry.base_url, "library/twice", "1", image, progress=messages.append)
    assert first == second == image.manifest.digest
    assert sum("already present" in message for message in messages) == len(image.blobs)
    assert not any(message.startswith("pushed blob") for message in messages)
    assert_image_stored(registry.base_url, "library/twice", "1", image)


@pytest.mark.lab
def test_progress_reports_every_blob_and_the_manifest(registry):
    image = build_image("library/progress", "1", 64 * KIB, layers=3)
    messages: list[str] = []
    push_image(registry.base_url, "library/progress", "1", image, progress=messages.append)
    for blob in image.blobs:
        assert any(blob.digest in message for message in messages)
    assert messages[-1] == f"pushed manifest library/progress:1 ({image.manifest.digest})"


@pytest.mark.lab
def test_skopeo_inspects_and_copies_a_pushed_image(registry, policy, tmp_path):
    image = build_image("library/skopeo", "1", 300 * KIB, seed="skopeo", layers=3)
    push_image(registry.base_url, "library/skopeo", "1", image)
    source = f"docker://{registry.host}/library/skopeo:1"

    inspected = skopeo("inspect", "--tls-verify=false", source, policy=policy)
    assert inspected.returncode == 0, inspected.stderr
    details = json.loads(inspected.stdout)
    assert details["Digest"] == image.manifest.digest
    assert details["Layers"] == [layer.digest for layer in image.layers]
    assert (details["Os"], details["Architecture"]) == ("linux", "amd64")

    target = tmp_path / "copy"
    copied = skopeo("copy", "--src-tls-verify=false", source, f"dir:{target}", policy=policy)
    assert copied.returncode == 0, copied.stderr
    for blob in image.blobs:
        assert (target / blob.digest.removeprefix("sha256:")).read_bytes() == blob.data


@pytest.mark.lab
def test_skopeo_copies_every_platform_of_a_pushed_index(registry, policy, tmp_path):
    index = build_index("library/skopeo-multi", "1", 64 * KIB, seed="skopeo")
    push_image(registry.base_url, "library/skopeo-multi", "1", index)
    source = f"docker://{registry.host}/library/skopeo-multi:1"

    raw = skopeo("inspect", "--raw", "--tls-verify=false", source, policy=policy)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.encode() == index.index.data

    target = tmp_path / "copy"
    copied = skopeo(
        "copy", "--all", "--src-tls-verify=false", source, f"dir:{target}", policy=policy
    )
    assert copied.returncode == 0, copied.stderr
    for child in index.images:
        for layer in child.layers:
            assert (target / layer.digest.removeprefix("sha256:")).is_file()


@pytest.mark.lab
def test_push_to_pull_through_mirror_is_unsupported_and_not_retried(pull_through_mirror):
    image = build_image("library/refused", "1", 1 * KIB)
    with pytest.raises(RegistryHTTPError) as caught:
        push_image(pull_through_mirror.base_url, "library/refused", "1", image)
    error = caught.value
    assert (error.status, error.code) == (405, "UNSUPPORTED")
    assert error.message == "The operation is unsupported."
    assert error.url == f"{pull_through_mirror.base_url}/v2/library/refused/blobs/uploads/"
    assert "405 UNSUPPORTED" in str(error)


@pytest.mark.lab
def test_index_whose_children_are_missing_is_refused_with_the_registry_code(registry):
    index = build_index("library/orphan", "1", 1 * KIB)
    orphan = SyntheticIndex(index.index, images=())  # children never pushed
    with pytest.raises(RegistryHTTPError) as caught:
        push_image(registry.base_url, "library/orphan", "1", orphan)
    assert caught.value.status == 400
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
    assert caught.value.url == f"{registry.base_url}/v2/library/orphan/manifests/1"


# --- transport behaviour against a scripted server -------------------------------


class ScriptedRegistry(http.server.ThreadingHTTPServer):
    """Answers each method with a fixed (status, body[, headers]), by default
    `status` with `body`, and records every request line."""

    def __init__(self, status: int, body: bytes, answers: dict[str, tuple]):
        self.answers = answers
        self.default = (status, body)
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        status, body, *extra = self.server.answers.get(self.command, self.server.default)
        self.send_response(status)
        for name, value in (extra[0] if extra else {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted():
    servers: list[ScriptedRegistry] = []

    def start(status: int, body: bytes = b"", **answers: tuple) -> ScriptedRegistry:
        server = ScriptedRegistry(status, body, answers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_5xx_is_retried_a_bounded_number_of_times(scripted):
    server = scripted(503)
    image = build_image("library/flaky", "1", 1 * KIB)
    with pytest.raises(RegistryHTTPError) as caught:
        push_image(server.base_url, "library/flaky", "1", image, attempts=3)
    assert caught.value.status == 503
    assert caught.value.code is None
    # The existence check is not retried (a failed HEAD means "upload it", as
    # docker push does); the upload, safe to repeat whole, is tried 3 times.
    assert server.requests[0].startswith("HEAD /v2/library/flaky/blobs/")
    assert server.requests[1:] == ["POST /v2/library/flaky/blobs/uploads/"] * 3


def test_4xx_is_not_retried_and_its_code_is_parsed(scripted):
    body = json.dumps(
        {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
    ).encode()
    server = scripted(403, body, HEAD=(404, b""))
    image = build_image("library/private", "1", 1 * KIB)
    with pytest.raises(RegistryHTTPError) as caught:
        push_image(server.base_url, "library/private", "1", image)
    assert (caught.value.status, caught.value.code) == (403, "DENIED")
    assert caught.value.message == "requested access to the resource is denied"
    assert [request.split()[0] for request in server.requests] == ["HEAD", "POST"]


def test_non_json_error_body_becomes_the_message(scripted):
    server = scripted(502, b"<html>bad gateway</html>", HEAD=(404, b""))
    image = build_image("library/proxy", "1", 1 * KIB)
    with pytest.raises(RegistryHTTPError) as caught:
        push_image(server.base_url, "library/proxy", "1", image, attempts=1)
    assert caught.value.code is None
    assert caught.value.message == "<html>bad gateway</html>"


def test_bodiless_error_uses_the_http_reason(scripted):
    server = scripted(502)
    image = build_image("library/proxy", "1", 1 * KIB)
    with pytest.raises(RegistryHTTPError) as caught:
        push_image(server.base_url, "library/proxy", "1", image, attempts=1)
    assert (caught.value.code, caught.value.message) == (None, "Bad Gateway")
    # The failed HEAD means "upload it"; the upload's 502 is the error reported.
    assert [r.split()[0] for r in server.requests] == ["HEAD", "POST"]


def test_upload_without_location_is_reported(scripted):
    server = scripted(404, b"", POST=(202, b""))
    image = build_image("library/nowhere", "1", 1 * KIB)
    with pytest.raises(RegistryHTTPError, match="without a Location header") as caught:
        push_image(server.base_url, "library/nowhere", "1", image)
    assert (caught.value.status, caught.value.code) == (202, BAD_RESPONSE)


def test_registry_naming_another_manifest_digest_is_a_digest_mismatch(scripted):
    wrong = "sha256:" + "0" * 64
    server = scripted(
        201,
        b"",
        HEAD=(200, b""),  # every blob "exists", so only the manifest goes up
        PUT=(201, b"", {"Docker-Content-Digest": wrong}),
    )
    image = build_image("library/liar", "1", 1 * KIB)
    with pytest.raises(PushError) as caught:
        push_image(server.base_url, "library/liar", "1", image)
    assert caught.value.code == DIGEST_MISMATCH
    assert wrong in str(caught.value)


def test_silent_registry_times_out():
    with socket.socket() as silent:  # listens, never accepts: connects succeed, reads hang
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        image = build_image("library/slow", "1", 1 * KIB)
        with pytest.raises(RegistryUnreachable) as caught:
            push_image(url, "library/slow", "1", image, attempts=1, timeout=0.3)
    assert caught.value.code == TIMEOUT
    assert "no answer within 0.3 s" in str(caught.value)


def test_refused_connection_is_a_network_error_after_retries():
    url = f"http://127.0.0.1:{free_port()}"
    image = build_image("library/nobody", "1", 1 * KIB)
    with pytest.raises(RegistryUnreachable) as caught:
        push_image(url, "library/nobody", "1", image, attempts=2, timeout=2)
    assert caught.value.code == NETWORK
    assert caught.value.url.startswith(url)


def test_headers_are_sent_on_every_request(scripted):
    seen: list[str | None] = []

    class Recording(_ScriptedHandler):
        def _answer(self) -> None:
            seen.append(self.headers.get("Authorization"))
            super()._answer()

        do_HEAD = do_GET = do_POST = do_PUT = _answer

    server = scripted(401)
    server.RequestHandlerClass = Recording
    image = build_image("library/auth", "1", 1 * KIB)
    with pytest.raises(RegistryHTTPError):
        push_image(
            server.base_url, "library/auth", "1", image, headers={"Authorization": "Bearer t0k"}
        )
    assert seen == ["Bearer t0k", "Bearer t0k"]  # the HEAD and the upload that met the 401


def test_default_session_ignores_proxy_environment(scripted, monkeypatch):
    # A proxy that does not exist: if push_image used it, the push would fail to connect.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    server = scripted(201, b"", HEAD=(200, b""))
    image = build_image("library/direct", "1", 1 * KIB)
    assert push_image(server.base_url, "library/direct", "1", image) == image.manifest.digest
    assert server.requests[-1] == "PUT /v2/library/direct/manifests/1"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (
            "/v2/r/blobs/uploads/abc",
            "http://127.0.0.1:5000/v2/r/blobs/uploads/abc?digest=sha256:1",
        ),
        (
            "http://other:6000/v2/r/blobs/uploads/abc",
            "http://other:6000/v2/r/blobs/uploads/abc?digest=sha256:1",
        ),
        (
            "/v2/r/blobs/uploads/abc?_state=xyz",
            "http://127.0.0.1:5000/v2/r/blobs/uploads/abc?_state=xyz&digest=sha256:1",
        ),
        ("abc", "http://127.0.0.1:5000/v2/r/blobs/uploads/abc?digest=sha256:1"),
    ],
)
def test_upload_url_resolves_relative_absolute_and_queried_locations(location, expected):
    start = "http://127.0.0.1:5000/v2/r/blobs/uploads/"
    assert upload_url(start, location, "sha256:1") == expected
