"""Configuration files for the distribution registries of the lab (docker-registry 2.8.2).

Three roles, one binary (`docker-registry serve config.yml`):
- the lab hub: token auth configured exactly like Docker Hub's registry, so its
  challenges are Hub's byte for byte;
- the mirror under test: proxy mode in front of registry-1.docker.io, the
  production pull-through cache configuration;
- the push registry: the blog post's fix for "push to a mirror is
  UNSUPPORTED", a plain registry sharing the mirror's storage, so what is
  pushed there can be pulled through the mirror.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from chaos.errors import EnvironmentProblem
from chaos.vocab.hub import REGISTRY_URL, TOKEN_ISSUER, TOKEN_REALM, TOKEN_SERVICE

# Fixed rather than random: the secret signs upload state, and a registry
# restarted mid-scenario should still accept uploads it began. Loopback only.
HTTP_SECRET = "hub-chaos-lab-not-a-secret"


def _base_config(storage_dir: Path, port: int) -> dict:
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            # Filesystem storage never redirects anyway; said explicitly so a blob
            # GET is always answered by the registry itself.
            "redirect": {"disable": True},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": HTTP_SECRET,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }


def hub_config(storage_dir: Path, port: int, cert_path: Path) -> dict:
    """The lab hub: token auth like Hub's (realm, service, issuer), trusting cert_path."""
    config = _base_config(storage_dir, port)
    config["storage"]["delete"] = {"enabled": True}
    config["auth"] = {
        "token": {
            "realm": TOKEN_REALM,
            "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(cert_path),
        }
    }
    return config


def mirror_config(storage_dir: Path, port: int, remote_url: str = REGISTRY_URL) -> dict:
    """A pull-through cache of remote_url: anonymous upstream, no auth on the mirror itself."""
    config = _base_config(storage_dir, port)
    config["proxy"] = {"remoteurl": remote_url}
    return config


def push_config(storage_dir: Path, port: int) -> dict:
    """A plain registry (no proxy, no auth) to share the mirror's storage_dir and take pushes."""
    return _base_config(storage_dir, port)


def write_config(config: dict, path: Path) -> Path:
    """Write config as YAML for `docker-registry serve`; returns path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=False))
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write registry config {path}: {exc.strerror}") from exc
    return path
