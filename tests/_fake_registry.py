"""An in-memory registry for the builtin client's tests, on a free 127.0.0.1
port in a thread: it serves images built here with plain gzip/tar/json, can
require bearer (its own /token endpoint) or basic auth, keeps private
repositories behind `insufficient_scope`, redirects blobs to another server
(the "CDN"), and misbehaves on demand: a status, a hang, a closed connection,
a truncated or corrupted body. Every request is recorded for assertions.

Also here: ForwardProxy, a recording plain-HTTP forward proxy, and
self_signed_cert for TLS tests.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import http.client
import io
import json
import re
import secrets
import socket
import ssl
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SERVICE = "fake.registry"
# Upper bound of any deliberate hang, so a broken test can never wait forever.
MAX_HANG_S = 10.0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    # The kernel's pick, in the ephemeral range: no lab listens there (chaos.lab.ports).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class FakeImage:
    manifest: bytes
    media_type: str
    digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    blobs: dict[str, bytes]

    @property
    def size(self) -> int:
        return len(self.manifest) + sum(len(blob) for blob in self.blobs.values())


def _layer(seed: str, size: int) -> tuple[bytes, bytes]:
    """A gzip tar with one file of `size` pseudo-random bytes; (gzip, tar)."""
    content = b""
    counter = 0
    while len(content) < size:
        content += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    content = content[:size]
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(f"data/{seed}.bin")
        info.size = len(content)
        info.mtime = 0
        archive.addfile(info, io.BytesIO(content))
    tar_bytes = tar_buffer.getvalue()
    return gzip.compress(tar_bytes, mtime=0), tar_bytes


def build_image(
    seed: str, *, arch: str = "amd64", oci: bool = False, layer_sizes=(3000, 200_000)
) -> FakeImage:
    layers = [_layer(f"{seed}-{index}", size) for index, size in enumerate(layer_sizes)]
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar) for _, tar in layers]},
        },
        sort_keys=True,
    ).encode()
    layer_type = (
        "application/vnd.oci.image.layer.v1.tar+gzip"
        if oci
        else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    config_type = (
        "application/vnd.oci.image.config.v1+json"
        if oci
        else "application/vnd.docker.container.image.v1+json"
    )
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": len(config), "digest": sha256(config)},
            "layers": [
                {"mediaType": layer_type, "size": len(gz), "digest": sha256(gz)} for gz, _ in layers
            ],
        },
        indent=3,
    ).encode()
    blobs = {sha256(config): config, **{sha256(gz): gz for gz, _ in layers}}
    return FakeImage(
        manifest=manifest,
        media_type=media_type,
        digest=sha256(manifest),
        config_digest=sha256(config),
        layer_digests=tuple(sha256(gz) for gz, _ in layers),
        blobs=blobs,
    )


def build_index(children: list[tuple[FakeImage, dict]], *, oci: bool = False) -> tuple[bytes, str]:
    """An index over (image, platform dict) pairs; returns (bytes, media type)."""
    media_type = OCI_INDEX if oci else DOCKER_MANIFEST_LIST
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": image.media_type,
                "size": len(image.manifest),
                "digest": image.digest,
                "platform": platform,
            }
            for image, platform in children
        ],
    }
    return json.dumps(document, indent=2).encode(), media_type


# --------------------------------------------------------------------------- server


@dataclass
class Fault:
    """Misbehaviour for one kind of request (ping, token, manifest, blob, cdn)."""

    status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float | None = None
    close: bool = False
    truncate: bool = False  # send headers and half the body, then close
    stall_s: float | None = None  # send headers and half the body, then wait this long, then close
    times: int | None = None  # None: every time
    only: str | None = None  # only requests whose path ends with this (a digest)
    delay_s: float | None = None  # answer normally, this much later


@dataclass(frozen=True)
class Seen:
    kind: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


_REPO_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<what>manifests|blobs)/(?P<reference>[^/]+)$")


class FakeRegistry:
    """Use as a context manager; configure attributes before or between pulls."""

    def __init__(self, *, auth: str | None = None, tls: tuple[str, str] | None = None):
        self.auth = auth  # None, "bearer" or "basic"
        self.users: dict[str, str] = {}
        self.grants: dict[str, set[str]] = {}  # user -> private repositories they may pull
        self.private: set[str] = set()
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}  # (repo, tag|digest)
        self.blobs: dict[str, bytes] = {}
        self.corrupt: set[str] = set()  # digests served with different bytes
        self.lying_digest_header = False  # announce a Docker-Content-Digest that is wrong
        self.blob_redirect: str | None = None  # base URL of a CDN serving /cdn/<digest>
        self.ranges = True  # answer `Range: bytes=N-` with 206, as distribution does
        self.faults: dict[str, Fault] = {}
        self.seen: list[Seen] = []
        self._tokens: dict[str, tuple[str | None, set[str]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tls = tls
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content

    def add_image(self, repo: str, tag: str, image: FakeImage, *, private: bool = False) -> None:
        self.manifests[(repo, tag)] = (image.manifest, image.media_type)
        self.manifests[(repo, image.digest)] = (image.manifest, image.media_type)
        self.blobs.update(image.blobs)
        if private:
            self.private.add(repo)

    def add_index(self, repo: str, tag: str, children: list[tuple[FakeImage, dict]]) -> str:
        body, media_type = build_index(children)
        for image, _ in children:
            self.manifests[(repo, image.digest)] = (image.manifest, image.media_type)
            self.blobs.update(image.blobs)
        self.manifests[(repo, tag)] = (body, media_type)
        self.manifests[(repo, sha256(body))] = (body, media_type)
        return sha256(body)

    def fail(self, kind: str, **fault) -> None:
        self.faults[kind] = Fault(**fault)

    def requests_of(self, kind: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.kind == kind]

    # -- lifecycle

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeRegistry:
        fake = self

        class Handler(_Handler):
            registry = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self._tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self._tls)
            # Handshake in the handler thread, not in the accept loop.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- request handling (runs in handler threads)

    def _take_fault(self, kind: str, path: str = "") -> Fault | None:
        with self._lock:
            fault = self.faults.get(kind)
            if fault is None or (fault.only and not path.endswith(fault.only)):
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault

    def handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        path = parts.path
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        match = _REPO_PATH.match(path)
        if path == "/v2/":
            kind = "ping"
        elif path == "/token":
            kind = "token"
        elif path.startswith("/cdn/"):
            kind = "cdn"
        elif match:
            kind = "manifest" if match["what"] == "manifests" else "blob"
        else:
            kind = "other"
        self.seen.append(Seen(kind, h.command, path, query, dict(h.headers.items())))
        fault = self._take_fault(kind, path)
        if fault and self._misbehave(h, fault, kind):
            return
        if kind == "ping":
            if self.auth:
                return self._challenge(h, scope=None)
            return h.reply(200, b"{}", {"Content-Type": "application/json"})
        if kind == "token":
            return self._token(h, query)
        if kind == "cdn":
            return self._blob(h, path.removeprefix("/cdn/"))
        if not match:
            return h.reply(404, _errors("NOT_FOUND", "no such path"))
        name = match["name"]
        if not self._authorized(h, name):
            return
        if kind == "manifest":
            return self._manifest(h, name, match["reference"])
        if self.blob_redirect:
            location = f"{self.blob_redirect}/cdn/{match['reference']}"
            return h.reply(307, b"", {"Location": location})
        return self._blob(h, match["reference"])

    def _misbehave(self, h: _Handler, fault: Fault, kind: str) -> bool:
        """Apply `fault`; True when the request is fully answered (or dropped)."""
        if fault.delay_s is not None:
            self._stopping.wait(min(fault.delay_s, MAX_HANG_S))
            return False
        if fault.hang_s is not None:
            self._stopping.wait(min(fault.hang_s, MAX_HANG_S))
            h.close_connection = True
            return True
        if fault.close:
            h.close_connection = True
            return True
        if fault.status is not None:
            body = fault.body if fault.body is not None else _errors("UNKNOWN", "injected failure")
            h.reply(fault.status, body, {"Content-Type": "application/json", **fault.headers})
            return True
        if (fault.truncate or fault.stall_s is not None) and kind in ("blob", "cdn"):
            digest = h.path.rsplit("/", 1)[-1]
            blob = self.blobs.get(digest, b"x" * 1000)
            h.send_response(200)
            h.send_header("Content-Length", str(len(blob)))
            h.end_headers()
            h.wfile.write(blob[: len(blob) // 2])
            h.wfile.flush()
            if fault.stall_s is not None:
                self._stopping.wait(min(fault.stall_s, MAX_HANG_S))
            h.close_connection = True
            return True
        return False

    def _challenge(self, h: _Handler, scope: str | None, error: str | None = None) -> None:
        if self.auth == "basic":
            header = 'Basic realm="fake"'
        else:
            header = f'Bearer realm="{self.base_url}/token",service="{SERVICE}"'
            if scope:
                header += f',scope="{scope}"'
            if error:
                header += f',error="{error}"'
        h.reply(
            401,
            _errors("UNAUTHORIZED", "authentication required"),
            {"Content-Type": "application/json", "WWW-Authenticate": header},
        )

    def _user(self, authorization: str | None) -> tuple[bool, str | None]:
        """(credentials acceptable, user) for a Basic header; anonymous is fine."""
        if not authorization:
            return True, None
        if not authorization.startswith("Basic "):
            return False, None
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        return self.users.get(user) == password, user

    def _may_pull(self, user: str | None, name: str) -> bool:
        known = any(repo == name for repo, _ in self.manifests)
        if name in self.private or not known:
            return user is not None and name in self.grants.get(user, set())
        return True

    def _token(self, h: _Handler, query: dict[str, str]) -> None:
        ok, user = self._user(h.headers.get("Authorization"))
        if not ok:
            return h.reply(401, json.dumps({"details": "incorrect username or password"}).encode())
        granted = set()
        scope = query.get("scope", "")
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and "pull" in actions.split(",") and self._may_pull(user, name):
            granted.add(name)
        token = secrets.token_hex(16)
        self._tokens[token] = (user, granted)
        answer = {"token": token, "access_token": token, "expires_in": 300}
        h.reply(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    def _authorized(self, h: _Handler, name: str) -> bool:
        """Answer 401 like distribution's token or basic auth when not allowed."""
        if not self.auth:
            return True
        authorization = h.headers.get("Authorization", "")
        scope = f"repository:{name}:pull"
        if self.auth == "basic":
            ok, user = self._user(authorization or None)
            if ok and user is not None and self._may_pull(user, name):
                return True
            self._challenge(h, scope)
            return False
        if not authorization.startswith("Bearer ") or authorization[7:] not in self._tokens:
            self._challenge(h, scope)
            return False
        _, granted = self._tokens[authorization[7:]]
        if name not in granted:
            self._challenge(h, scope, error="insufficient_scope")
            return False
        return True

    def _manifest(self, h: _Handler, name: str, reference: str) -> None:
        found = self.manifests.get((name, reference))
        if found is None:
            return h.reply(404, _errors("MANIFEST_UNKNOWN", "manifest unknown"))
        body, media_type = found
        digest = sha256(body)
        if digest in self.corrupt:
            body = body + b"\n"  # still valid JSON, no longer those bytes
            digest = sha256(body)
        if self.lying_digest_header:
            digest = sha256(b"something else")
        h.reply(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest})

    def _blob(self, h: _Handler, digest: str) -> None:
        blob = self.blobs.get(digest)
        if blob is None:
            return h.reply(404, _errors("BLOB_UNKNOWN", "blob unknown to registry"))
        if digest in self.corrupt:
            blob = blob[:-1] + bytes([blob[-1] ^ 0xFF])
        wanted = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
        if wanted and self.ranges and int(wanted.group(1)) < len(blob):
            start = int(wanted.group(1))
            content_range = f"bytes {start}-{len(blob) - 1}/{len(blob)}"
            return h.reply(206, blob[start:], {"Content-Type": "application/octet-stream", "Content-Range": content_range})
        h.reply(200, blob, {"Content-Type": "application/octet-stream"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    registry: FakeRegistry

    def do_GET(self) -> None:
        self.registry.handle(self)

    def do_HEAD(self) -> None:  # containerd resolves tags with HEAD
        self.registry.handle(self)

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        # Written in pieces, so a client's streaming and progress get exercised.
        for start in range(0, len(body), 32 * 1024):
            self.wfile.write(body[start : start + 32 * 1024])

    def log_message(self, *args) -> None:
        pass  # quiet tests


def _errors(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


# --------------------------------------------------------------------------- proxy


class ForwardProxy:
    """A plain-HTTP forward proxy (absolute-form requests only, no CONNECT) that
    records every target URL: proof of which traffic went through a proxy."""

    def __init__(self):
        self.targets: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                proxy.targets.append(self.path)
                target = urlsplit(self.path)
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
                    path = target.path + (f"?{target.query}" if target.query else "")
                    upstream.request("GET", path, headers=headers)
                    answer = upstream.getresponse()
                    body = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- TLS


def self_signed_cert(folder: Path) -> tuple[str, str]:
    """A CA-flagged self-signed certificate for 127.0.0.1; (cert path, key path)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake registry")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)
