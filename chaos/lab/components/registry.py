"""`docker-registry serve CONFIG`: the one binary behind the hub, the mirror and
the push registry, each with its own configuration (chaos.lab.registry_config)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from chaos.lab.components.launch import Launch, clean_env
from chaos.lab.registry_config import write_config


def serve_registry(
    name: str,
    *,
    binary: str,
    config: dict,
    config_path: Path,
    log_path: Path,
    url: str,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
) -> Launch:
    """Writes config to config_path now: a restart must find the very same file."""
    write_config(config, config_path)
    return Launch(name, (binary, "serve", str(config_path)), ready, log_path, url=url, env=clean_env(env),
                  ports=(urlsplit(url).port,))
