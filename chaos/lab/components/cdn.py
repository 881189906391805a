"""The blob CDN (python -m chaos.lab.cdn_service): what
production.cloudflare.docker.com is to Hub, serving the hub registry's storage
to the signed URLs the fault proxy's redirects carry; over TLS for that host
name when given a certificate (chaos.proxy.upstream_tls), so the fault proxy
can relay CDN tunnels unopened while no fault could match them."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from chaos.lab.components.launch import LOOPBACK, Launch, clean_env, http_ok, loopback_url
from chaos.proxy.upstream_tls import ServerCert


def write_secret(path: Path) -> Path:
    """A fresh URL signing secret, readable by its owner only. Written before
    the CDN or the proxy starts (both read it), and fresh for every lab so no
    URL outlives it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    return path


def blob_cdn(*, port: int, storage: Path, secret_file: Path, log_path: Path, request_log: Path | None = None,
             tls: ServerCert | None = None) -> Launch:
    """storage: the hub registry's filesystem root. request_log: where its
    one line per request goes (default: its own log, with everything else).
    tls: serve TLS with this certificate (its url is then https://)."""
    url = loopback_url(port, "https" if tls else "http")
    argv = (
        sys.executable, "-m", "chaos.lab.cdn_service", "--storage", str(storage),
        "--secret-file", str(secret_file), "--host", LOOPBACK, "--port", str(port),
    )  # fmt: skip
    if request_log is not None:
        argv += ("--log", str(request_log))
    if tls is not None:
        argv += ("--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file))
    ready = http_ok(f"{url}/healthz", verify=str(tls.ca_file) if tls else True)
    return Launch("cdn", argv, ready, log_path, url=url, env=clean_env(), ports=(port,))
