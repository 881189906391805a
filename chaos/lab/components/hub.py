"""The lab hub's registry: distribution with Docker Hub's token auth, plain
HTTP on loopback (the fault proxy terminates TLS for registry-1.docker.io)."""

from __future__ import annotations

from pathlib import Path

from chaos.lab.components.launch import Launch, http_answers, loopback_url
from chaos.lab.components.registry import serve_registry
from chaos.lab.registry_config import hub_config


def hub_registry(*, binary: str, port: int, storage: Path, cert_path: Path, config_path: Path, log_path: Path) -> Launch:
    """cert_path: the auth service's certificate, which the registry trusts for tokens."""
    url = loopback_url(port)
    return serve_registry(
        "hub", binary=binary, config=hub_config(storage, port, cert_path), config_path=config_path,
        # Any answer will do: without a token /v2/ is a 401, which proves the hub is up.
        log_path=log_path, url=url, ready=http_answers(f"{url}/v2/"),
    )
