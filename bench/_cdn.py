"""The benchmarks' blob CDN: the lab's (chaos.lab.cdn_service, same handler,
same chunked streaming) serving TLS, as a CDN in front of Hub does.

    python bench/_cdn.py --storage DIR --secret-file FILE --port N --cert PEM --key PEM

Two kinds of URL, one file behind each:
- the lab's signed URLs (/registry-v2/...?verify=..., minted by the fault
  proxy's CdnRedirect), checked exactly as the lab's CDN checks them;
- distribution's own blob paths (/docker/registry/v2/blobs/sha256/...), the
  URLs a registry with the `redirect` storage middleware sends clients to:
  the hub of the arms without the fault proxy redirects there, so every arm
  gets its blob bytes from this process.

TLS: only HTTP/1.1 is offered (ALPN), as the lab's CDN speaks; the handshake
runs in the request's own thread, never in the accept loop.
"""

from __future__ import annotations

import argparse
import re
import ssl
import sys
from pathlib import Path

from chaos.lab import cdn_service
from chaos.lab.serving import serve_until_stopped
from chaos.proxy.cdn_urls import read_secret

# The path the `redirect` middleware gives a blob: the storage layout, from its root.
_PUBLIC_BLOB = re.compile(r"^/docker/registry/v2/blobs/sha256/([a-f0-9]{2})/([a-f0-9]{64})/data$")


class _Handler(cdn_service._Handler):  # the lab CDN's own handler, one route added
    def _route(self, path: str, query: str) -> None:
        match = _PUBLIC_BLOB.match(path)
        if match is None or self.command not in ("GET", "HEAD"):
            return super()._route(path, query)
        hex_digest = match.group(2)
        try:
            blob = open(self.server.blobs / hex_digest[:2] / hex_digest / "data", "rb")
        except FileNotFoundError:
            return self._refuse(404, "Not Found", "no such blob")
        with blob:
            self._send_blob(blob, f"sha256:{hex_digest}")


class TlsCdnServer(cdn_service.CdnServer):
    def __init__(self, address, storage: Path, secret: bytes, log, context: ssl.SSLContext):
        super().__init__(address, storage, secret, log)
        self.RequestHandlerClass = _Handler
        self.tls = context

    def get_request(self):
        sock, address = self.socket.accept()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", type=Path, required=True)
    parser.add_argument("--secret-file", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])
    log = open(args.log, "a", encoding="utf-8") if args.log else sys.stderr
    server = TlsCdnServer(("127.0.0.1", args.port), args.storage, read_secret(args.secret_file),
                          cdn_service.RequestLog(log), context)
    serve_until_stopped(server, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
