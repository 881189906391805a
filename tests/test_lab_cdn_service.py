import hashlib
import http.client
import io
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from chaos.errors import UsageError
from chaos.lab.cdn_service import CHUNK_BYTES, ByteRange, Unsatisfiable, make_server, parse_range
from chaos.lab.ports import free_port
from chaos.proxy.cdn_urls import URL_TTL_S, blob_path, signed_blob_url

SECRET = b"lab-secret-0123456789abcdef"
TIMEOUT_S = 5
BLOB = bytes(range(256)) * (3 * CHUNK_BYTES // 256 + 7)  # several chunks and a ragged end
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
MISSING = "sha256:" + "0" * 64


def store(storage, data):
    digest = hashlib.sha256(data).hexdigest()
    folder = storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / digest[:2] / digest
    folder.mkdir(parents=True)
    (folder / "data").write_bytes(data)
    return "sha256:" + digest


class Running:
    def __init__(self, server, log):
        self.server = server
        self.log = log
        self.origin = f"http://127.0.0.1:{server.port}"
        self.http = requests.Session()
        self.http.trust_env = False

    def url(self, digest=DIGEST, **kwargs):
        parts = urlsplit(signed_blob_url("production.cloudflare.docker.com", digest, SECRET, **kwargs))
        return f"{self.origin}{parts.path}?{parts.query}"

    def get(self, url, method="GET", **headers):
        return self.http.request(method, url, headers=headers, timeout=TIMEOUT_S)

    def log_lines(self, count):
        """The log once it holds `count` lines: the handler writes its line just
        after the response, so the client may read the answer first."""
        deadline = time.monotonic() + TIMEOUT_S
        while len(lines := self.log.getvalue().splitlines()) < count:
            assert time.monotonic() < deadline, f"log has {len(lines)} lines, expected {count}"
            time.sleep(0.01)
        return lines

    def raw(self, target, method="GET"):
        """Send `target` byte for byte (requests would normalise dot segments)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=TIMEOUT_S)
        try:
            connection.request(method, target)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture
def cdn(tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    store(storage, BLOB)
    (tmp_path / "secret.txt").write_text("not a blob")
    log = io.StringIO()
    server = make_server(storage, SECRET, log=log)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    running = Running(server, log)
    try:
        yield running
    finally:
        running.http.close()
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


def test_signed_url_serves_the_whole_blob(cdn):
    response = cdn.get(cdn.url())
    assert response.status_code == 200
    assert response.content == BLOB
    assert response.headers["Content-Length"] == str(len(BLOB))
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["ETag"] == f'"{DIGEST}"'
    assert response.headers["Accept-Ranges"] == "bytes"


def test_head_answers_the_headers_without_a_body(cdn):
    response = cdn.get(cdn.url(), method="HEAD")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(BLOB))
    assert response.content == b""


@pytest.mark.parametrize(
    "header, start, end",
    [
        ("bytes=10-19", 10, 19),
        (f"bytes={CHUNK_BYTES - 5}-", CHUNK_BYTES - 5, len(BLOB) - 1),  # a resumed download
        ("bytes=-100", len(BLOB) - 100, len(BLOB) - 1),
        (f"bytes=5-{len(BLOB) * 2}", 5, len(BLOB) - 1),
    ],
)
def test_single_range_gets_206_with_exactly_those_bytes(cdn, header, start, end):
    response = cdn.get(cdn.url(), Range=header)
    assert response.status_code == 206
    assert response.content == BLOB[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(BLOB)}"
    assert response.headers["Content-Length"] == str(end - start + 1)


def test_range_past_the_end_is_416_with_the_size(cdn):
    response = cdn.get(cdn.url(), Range=f"bytes={len(BLOB)}-")
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(BLOB)}"


@pytest.mark.parametrize("headers", [{"Range": "bytes=0-1,5-6"}, {"Range": "bytes=1-2", "If-Range": '"sha256:other"'}])
def test_several_ranges_or_a_stale_if_range_get_the_whole_blob(cdn, headers):
    response = cdn.get(cdn.url(), **headers)
    assert response.status_code == 200 and response.content == BLOB


def test_tampered_signature_is_403_with_a_cdn_page(cdn):
    url = cdn.url()
    tampered = url[:-1] + ("A" if url[-1] != "A" else "B")
    response = cdn.get(tampered)
    assert response.status_code == 403
    assert "403 Forbidden" in response.text and "cloudflare" in response.text
    assert BLOB[:64] not in response.content


def test_signature_for_another_blob_is_403(cdn):
    other = urlsplit(cdn.url(MISSING)).query
    assert cdn.get(f"{cdn.origin}{blob_path(DIGEST)}?{other}").status_code == 403


@pytest.mark.parametrize("query", ["", "?verify=", "?verify=12345", "?expires=99999999999"])
def test_missing_or_malformed_verify_is_403(cdn, query):
    assert cdn.get(f"{cdn.origin}{blob_path(DIGEST)}{query}").status_code == 403


def test_expired_url_is_403(cdn):
    response = cdn.get(cdn.url(now=time.time() - URL_TTL_S - 5))
    assert response.status_code == 403
    (line,) = cdn.log_lines(1)
    assert "status=403" in line and "expired" in line


def test_missing_blob_with_a_good_signature_is_404(cdn):
    assert cdn.get(cdn.url(MISSING)).status_code == 404


@pytest.mark.parametrize(
    "target, status",
    [
        ("/registry-v2/docker/registry/v2/blobs/sha256/../../../../../../secret.txt", 400),
        ("/registry-v2/docker/registry/v2/blobs/sha256/%2e%2e/%2e%2e/data", 400),
        ("/registry-v2/docker/registry/v2/blobs/sha256/ab/" + "AB" * 32 + "/data", 400),  # not lowercase hex
        ("/registry-v2/docker/registry/v2/blobs/sha256/cd/" + "ab" * 32 + "/data", 400),  # wrong prefix folder
        ("/registry-v2/docker/registry/v2/blobs/sha256/ab/" + "ab" * 32 + "/data/../../../x", 400),
        ("/secret.txt", 404),
        ("/../secret.txt", 404),
        ("/registry-v3/" + "ab" * 32, 404),
    ],
)
def test_paths_outside_the_blob_store_cannot_be_read(cdn, target, status):
    code, body = cdn.raw(target)
    assert code == status
    assert b"not a blob" not in body


def test_other_methods_are_405(cdn):
    code, _ = cdn.raw(blob_path(DIGEST), method="DELETE")
    assert code == 405


def test_one_keep_alive_connection_serves_several_requests(cdn):
    target = urlsplit(cdn.url())
    connection = http.client.HTTPConnection("127.0.0.1", cdn.server.port, timeout=TIMEOUT_S)
    try:
        for method, headers, body in (("HEAD", {}, b""), ("GET", {"Range": "bytes=0-0"}, BLOB[:1]), ("GET", {}, BLOB)):
            connection.request(method, f"{target.path}?{target.query}", headers=headers)
            response = connection.getresponse()
            assert response.read() == body
            assert not response.will_close
    finally:
        connection.close()


def test_one_log_line_per_request_and_no_signature_in_it(cdn):
    url = cdn.url()
    cdn.get(url)
    cdn.get(cdn.origin + "/healthz")
    lines = cdn.log_lines(2)
    assert len(lines) == 2
    assert f"GET {blob_path(DIGEST)} status=200 bytes={len(BLOB)}" in lines[0]
    assert urlsplit(url).query.split("-", 1)[1] not in cdn.log.getvalue()


def test_healthz_answers_ok(cdn):
    response = cdn.get(cdn.origin + "/healthz")
    assert response.status_code == 200 and response.text == "ok\n"


@pytest.mark.parametrize(
    "header, size, expected",
    [
        (None, 10, None),
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=3-", 10, ByteRange(3, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes=5-2", 10, None),  # invalid: ignored
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
        ("bytes=0-1,3-4", 10, None),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header, size", [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-0", 0), ("bytes=-1", 0)])
def test_parse_range_unsatisfiable(header, size):
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_make_server_refuses_a_storage_folder_that_does_not_exist(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        make_server(tmp_path / "nowhere", SECRET)


def test_service_runs_as_a_program_and_stops_on_sigterm(tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    digest = store(storage, b"layer bytes")
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    port = free_port()
    log = tmp_path / "cdn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chaos.lab.cdn_service", "--storage", str(storage),
             "--secret-file", str(secret_file), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        session = requests.Session()
        session.trust_env = False
        deadline = time.monotonic() + 10
        while True:
            try:
                session.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        path_and_query = signed_blob_url("x.cloudflare.docker.com", digest, SECRET).split("docker.com", 1)[1]
        assert session.get(f"http://127.0.0.1:{port}{path_and_query}", timeout=TIMEOUT_S).content == b"layer bytes"
        session.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(TIMEOUT_S)
    assert f"GET {blob_path(digest)} status=200" in log.read_text()


def test_program_with_a_bad_secret_file_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "chaos.lab.cdn_service", "--storage", str(tmp_path),
         "--secret-file", str(tmp_path / "missing"), "--port", "0"],
        capture_output=True, text=True, timeout=30, start_new_session=True,
    )
    assert result.returncode == 2
    assert "cannot read CDN secret file" in result.stderr


def test_with_a_certificate_it_serves_tls_for_the_cdn_host_http1_only(tmp_path):
    from chaos.lab.cdn_service import server_tls
    from chaos.proxy.upstream_tls import issue_server_cert

    storage = tmp_path / "storage"
    storage.mkdir()
    store(storage, BLOB)
    cert = issue_server_cert(tmp_path / "proxy-conf", tmp_path / "tls", ("production.cloudflare.docker.com", "127.0.0.1"))
    log = io.StringIO()
    server = make_server(storage, SECRET, log=log, tls=server_tls(cert.cert_file, cert.key_file))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        running = Running(server, log)
        running.origin = f"https://127.0.0.1:{server.port}"
        running.http.verify = str(cert.ca_file)  # the proxy's CA: what the lab's clients trust
        response = running.get(running.url())
        assert (response.status_code, response.content) == (200, BLOB)
        context = ssl.create_default_context(cafile=str(cert.ca_file))
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as raw:
            with context.wrap_socket(raw, server_hostname="production.cloudflare.docker.com") as tls:
                assert tls.selected_alpn_protocol() == "http/1.1"
        # A client that leaves mid-handshake costs one log line, not a traceback.
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as raw:
            raw.sendall(b"\x16\x03\x01\x00\x05hello")
        running.log_lines(2)
        assert "failed" in log.getvalue().splitlines()[-1]
        running.http.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)
