"""The push registry: a plain registry (no proxy, no auth) sharing the mirror's
storage, the usual fix for "push to a mirror is UNSUPPORTED": what is pushed
here, the mirror serves."""

from __future__ import annotations

from pathlib import Path

from chaos.lab.components.launch import Launch, http_ok, loopback_url
from chaos.lab.components.registry import serve_registry
from chaos.lab.registry_config import push_config


def push_registry(
    *,
    binary: str,
    port: int,
    storage: Path,
    config_path: Path,
    log_path: Path,
    https_proxy: str | None = None,
    ca_file: Path | str | None = None,
) -> Launch:
    """storage: the mirror's storage folder. https_proxy, ca_file: its own
    listener of the fault proxy and that proxy's CA, should it ever reach
    out (a plain registry does not: then the tap shows nothing from it)."""
    env = {}
    if https_proxy is not None:
        env["HTTPS_PROXY"] = https_proxy
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    url = loopback_url(port)
    return serve_registry(
        "push-registry", binary=binary, config=push_config(storage, port), config_path=config_path,
        log_path=log_path, url=url, ready=http_ok(f"{url}/v2/"), env=env,
    )
