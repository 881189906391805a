"""The lab's blob CDN: what production.cloudflare.docker.com is to Docker Hub.

Hub answers a blob GET with `307 Temporary Redirect` to a signed, expiring URL
on its CDN, and clients fetch the bytes from there without their registry
token. The path of that URL is distribution's own storage layout, so the lab
serves it straight from the hub registry's storage folder:

    GET /registry-v2/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data?verify=<expires>-<signature>
        -> <storage>/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data

`verify` has the shape of Hub's (Cloudflare token authentication): a unix time,
a dash, and an HMAC-SHA256 of the path and that time under a secret shared
with the fault proxy's CdnRedirect addon, which mints the URLs. Here the time
is the expiry, so a URL can be neither forged nor used forever.

On loopback, plain HTTP or (with --tls-cert/--tls-key) TLS for the CDN's
host name: the fault proxy routes the CDN host here, and while no fault
could match it relays the clients' TLS to this server unopened
(chaos.proxy.passthrough), so the certificate is one the clients trust, from
the proxy's own CA (chaos.proxy.upstream_tls). HTTP/1.1 only (the relay's
exchange boundaries rely on it). GET and HEAD, a single byte range (206;
clients resume broken downloads), bodies streamed in chunks, and one log line
per request.

The URL contract (what a good URL is, how it is signed) lives in
chaos.proxy.cdn_urls, shared with the addon that mints the URLs.

Run it: python -m chaos.lab.cdn_service --storage DIR --secret-file FILE --port N [--host H] [--log FILE]
        [--tls-cert PEM --tls-key PEM]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, TextIO
from urllib.parse import urlsplit

from chaos.errors import ChaosError, UsageError
from chaos.lab.serving import serve_until_stopped
from chaos.proxy.cdn_urls import MIN_SECRET_BYTES, check_signature, read_secret

CHUNK_BYTES = 256 * 1024
# Strict on purpose: the file path is rebuilt from these two hex groups only,
# so nothing a client sends can name a file outside the blob store.
_BLOB_PATH = re.compile(r"^/registry-v2/docker/registry/v2/blobs/sha256/([a-f0-9]{2})/([a-f0-9]{64})/data$")
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")


# -- ranges -------------------------------------------------------------------


class Unsatisfiable(Exception):
    """A well-formed range that lies outside the blob: 416."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range asked for, None to send the whole blob.

    Several ranges or a malformed header are ignored (RFC 9110 lets a server
    answer 200 with everything); a range entirely past the end raises
    Unsatisfiable.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable()
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable()
    return ByteRange(start, min(int(last), size - 1) if last else size - 1)


# -- HTTP ---------------------------------------------------------------------


def _page(status: int, reason: str) -> bytes:
    # What Cloudflare's edge answers with: a bare nginx-style page.
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


class RequestLog:
    """One line per request; the signature in the query is never written."""

    def __init__(self, stream: TextIO | None):
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        if self.stream is None:
            return
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock:
            self.stream.write(f"{stamp} {line}\n")
            self.stream.flush()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the proxy reuses its upstream connections
    timeout = 60  # an idle keep-alive connection must not hold a thread forever
    server_version = "cloudflare"
    sys_version = ""
    server: CdnServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's stderr access log; _dispatch writes ours."""

    def _dispatch(self) -> None:
        started = time.monotonic()
        self._status, self._sent, self._note = 0, 0, ""
        path = urlsplit(self.path).path
        try:
            self._route(path, urlsplit(self.path).query)
        except (BrokenPipeError, ConnectionResetError):
            self._note = self._note or "client went away"
            self.close_connection = True
        finally:
            line = f"{self.command} {path} status={self._status} bytes={self._sent} ms={(time.monotonic() - started) * 1000:.1f}"
            if self.headers.get("Range"):
                line += f" range={self.headers['Range']!r}"
            if self._note:
                line += f" note={self._note!r}"
            self.server.log.write(line)

    def _route(self, path: str, query: str) -> None:
        if self.command not in ("GET", "HEAD"):
            # A body we do not read would be parsed as the next request.
            self.close_connection = True
            return self._refuse(405, "Method Not Allowed", "only GET and HEAD", {"Allow": "GET, HEAD"})
        if path == "/healthz":
            return self._send_small(200, b"ok\n", "text/plain")
        if not path.startswith("/registry-v2/"):
            return self._refuse(404, "Not Found", "not a blob path")
        match = _BLOB_PATH.match(path)
        if match is None or match.group(2)[:2] != match.group(1):
            return self._refuse(400, "Bad Request", "malformed blob path")
        problem = check_signature(self.server.secret, path, query, time.time())
        if problem:
            return self._refuse(403, "Forbidden", problem)
        hex_digest = match.group(2)
        file = self.server.blobs / hex_digest[:2] / hex_digest / "data"
        try:
            blob = open(file, "rb")
        except (FileNotFoundError, NotADirectoryError):
            return self._refuse(404, "Not Found", "no such blob")
        with blob:
            self._send_blob(blob, f"sha256:{hex_digest}")

    def _send_blob(self, blob: BinaryIO, digest: str) -> None:
        size = os.fstat(blob.fileno()).st_size
        etag = f'"{digest}"'
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:
            range_header = None  # the client's partial copy is of something else: send it all
        try:
            wanted = parse_range(range_header, size)
        except Unsatisfiable:
            return self._refuse(416, "Range Not Satisfiable", "range outside the blob", {"Content-Range": f"bytes */{size}"})
        start, length = (wanted.start, wanted.length) if wanted else (0, size)
        self._status = 206 if wanted else 200
        self.send_response(self._status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "public, max-age=14400")
        if wanted:
            self.send_header("Content-Range", f"bytes {wanted.start}-{wanted.end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        blob.seek(start)
        remaining = length
        while remaining:
            chunk = blob.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                # Shorter than it was a moment ago: the promised length cannot be met.
                self._note = "blob shrank while being sent"
                self.close_connection = True
                return
            self.wfile.write(chunk)
            self._sent += len(chunk)
            remaining -= len(chunk)

    def _refuse(self, status: int, reason: str, note: str, headers: dict[str, str] | None = None) -> None:
        self._note = note
        self._send_small(status, _page(status, reason), "text/html", headers)

    def _send_small(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self._sent = len(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


class CdnServer(ThreadingHTTPServer):
    """The CDN on one loopback port; serve_forever() in a thread or a process.
    With `tls` (server_tls()) every connection speaks TLS."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], storage: Path, secret: bytes, log: RequestLog,
                 tls: ssl.SSLContext | None = None):
        self.blobs = Path(storage) / "docker" / "registry" / "v2" / "blobs" / "sha256"
        self.secret = secret
        self.log = log
        self.tls = tls
        super().__init__(address, _Handler)

    def get_request(self):
        sock, address = self.socket.accept()
        if self.tls is None:
            return sock, address
        # The handshake runs in the request's own thread (on its first read), never in the accept loop.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address) -> None:
        # A client that gives up during the TLS handshake (or resets) is worth a line, not a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError)):
            self.log.write(f"connection from {client_address[0]}:{client_address[1]} failed: {error}")
            return
        super().handle_error(request, client_address)

    @property
    def port(self) -> int:
        return self.server_address[1]


def server_tls(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The CDN's TLS: this certificate, HTTP/1.1 only (ALPN), as Hub's CDN answers the lab's clients."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"CDN certificate {str(cert_file)!r} or key {str(key_file)!r} unusable: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def make_server(
    storage: Path,
    secret: bytes,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log: TextIO | None = None,
    tls: ssl.SSLContext | None = None,
) -> CdnServer:
    """A bound, not yet serving, CDN over a registry storage root (port 0 = any free port: read .port).

    The storage folder must exist (the registry fills it later); a missing one
    is a UsageError now rather than a 404 for every blob.
    """
    if not Path(storage).is_dir():
        raise UsageError(f"CDN storage {str(storage)!r} is not a directory")
    if len(secret) < MIN_SECRET_BYTES:
        raise UsageError(f"CDN secret too short: {len(secret)} bytes, at least {MIN_SECRET_BYTES} needed")
    return CdnServer((host, port), Path(storage), secret, RequestLog(log), tls)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.lab.cdn_service",
        description="The lab hub's blob CDN (production.cloudflare.docker.com) on loopback, plain HTTP or TLS.",
    )
    parser.add_argument("--storage", type=Path, required=True, help="the hub registry's filesystem storage root")
    parser.add_argument("--secret-file", type=Path, required=True, help="file holding the URL signing secret")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0 = any free port)")
    parser.add_argument("--log", type=Path, help="append one line per request here (default stderr)")
    parser.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate (PEM, with its chain)")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    log_stream = open(args.log, "a", encoding="utf-8") if args.log else sys.stderr
    try:
        tls = server_tls(args.tls_cert, args.tls_key) if args.tls_cert else None
        server = make_server(args.storage, read_secret(args.secret_file), host=args.host, port=args.port,
                             log=log_stream, tls=tls)
    except ChaosError as exc:
        print(f"cdn_service: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"cdn_service: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 3
    server.log.write(f"listening on {args.host}:{server.port}, serving {args.storage}")
    serve_until_stopped(server, log_stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
