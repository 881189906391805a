"""The auth.docker.io emulation (python -m chaos.lab.auth_service): issues the
tokens the hub registry trusts, for the users and repositories of an accounts
file it re-reads when the lab publishes."""

from __future__ import annotations

import sys
from pathlib import Path

from chaos.lab.components.launch import LOOPBACK, Launch, clean_env, http_ok, loopback_url


def auth_service(*, port: int, accounts_file: Path, keys: Path, log_path: Path) -> Launch:
    """keys: the folder holding the token signer's key.pem and cert.pem."""
    url = loopback_url(port)
    argv = (
        sys.executable, "-m", "chaos.lab.auth_service", "--accounts", str(accounts_file),
        "--keys", str(keys), "--host", LOOPBACK, "--port", str(port),
    )  # fmt: skip
    return Launch("auth", argv, http_ok(f"{url}/healthz"), log_path, url=url, env=clean_env(), ports=(port,))
