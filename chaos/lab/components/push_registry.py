"""The push registry: a plain registry (no proxy, no auth) sharing the mirror's
storage, the usual fix for "push to a mirror is UNSUPPORTED": what is pushed
here, the mirror serves."""

from __future__ import annotations

from pathlib import Path

from chaos.lab.components.launch import Launch, http_ok, loopback_url
from chaos.lab.components.registry import serve_registry
from chaos.lab.registry_config import push_config


def push_registry(*, binary: str, port: int, storage: Path, config_path: Path, log_path: Path) -> Launch:
    """storage: the mirror's storage folder."""
    url = loopback_url(port)
    return serve_registry(
        "push-registry", binary=binary, config=push_config(storage, port), config_path=config_path,
        log_path=log_path, url=url, ready=http_ok(f"{url}/v2/"),
    )
