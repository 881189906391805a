"""The mirror under test: distribution in proxy mode, configured as in
production (proxy.remoteurl https://registry-1.docker.io), reaching its
upstream through an HTTPS proxy whose CA it trusts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chaos.lab.components.launch import Launch, http_ok, loopback_url
from chaos.lab.components.registry import serve_registry
from chaos.lab.registry_config import mirror_config
from chaos.vocab.hub import REGISTRY_URL


def pull_through_mirror(
    *,
    binary: str,
    port: int,
    storage: Path,
    config_path: Path,
    log_path: Path,
    remote_url: str = REGISTRY_URL,
    https_proxy: str | None = None,
    ca_file: Path | str | None = None,
    extra_env: Mapping[str, str] | None = None,
    name: str = "mirror",
    config: dict | None = None,
) -> Launch:
    """https_proxy: where Go sends its upstream traffic (the fault proxy).
    ca_file: SSL_CERT_FILE, which replaces the system roots in Go: the CA of
    that proxy, or of whatever serves remote_url.
    config: the whole configuration (chaos.lab.registry_config.mirror_config_from,
    with the same storage, port and remote_url); default: the lab's own anonymous mirror."""
    env = dict(extra_env or {})
    if https_proxy is not None:
        env["HTTPS_PROXY"] = https_proxy
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    url = loopback_url(port)
    return serve_registry(
        name, binary=binary, config=config if config is not None else mirror_config(storage, port, remote_url),
        config_path=config_path,
        log_path=log_path, url=url, ready=http_ok(f"{url}/v2/"), env=env,
    )
