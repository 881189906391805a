"""The programs the lab runs that the Debian system provides, each found with a
one-line hint naming the package to install (EnvironmentProblem, exit 3).

The engines that run these programs (chaos.clients, above the lab) can use
the same functions, so a missing binary reads the same whoever finds it first.
"""

from __future__ import annotations

import os
import shutil

from chaos.errors import EnvironmentProblem
from chaos.lab.process import require_binary

REGISTRY_ENV = "CHAOS_REGISTRY_BINARY"
REGISTRY_NAMES = ("docker-registry", "registry")
"""The distribution registry as Debian names it, then as upstream does."""
REGISTRY_HINT = (
    "no distribution registry found (docker-registry or registry on the PATH): install the Debian package "
    f"docker-registry (apt-get install docker-registry), or name the binary with {REGISTRY_ENV}"
)
DOCKER_REGISTRY_HINT = "install the Debian package docker-registry (apt-get install docker-registry)"
SKOPEO_HINT = "engine skopeo cannot run: install the Debian package skopeo (apt-get install skopeo), or use --engine builtin"
DOCKERD_HINT = "engine docker cannot run: install the Debian package docker.io (apt-get install docker.io), or use --engine builtin"
CONTAINERD_HINT = (
    "engine containerd cannot run: install the Debian package containerd (apt-get install containerd), "
    "or use --engine builtin"
)


def require_registry(binary: str | None = None) -> str:
    """The distribution registry (hub, mirror and push registry all run it):
    `binary` if given (an option), else $CHAOS_REGISTRY_BINARY, else
    docker-registry (Debian) or registry (upstream) on the PATH."""
    named, source = (binary, "registry binary") if binary else (os.environ.get(REGISTRY_ENV), REGISTRY_ENV)
    if named:
        path = shutil.which(named) if not os.path.isabs(named) else (named if os.access(named, os.X_OK) else None)
        if not path or os.path.isdir(path):
            raise EnvironmentProblem(f"{source} {named}: not found or not executable")
        return path
    for name in REGISTRY_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise EnvironmentProblem(REGISTRY_HINT)


def require_docker_registry(binary: str = "docker-registry") -> str:
    """The Debian registry binary by name (bench/ and older callers); prefer require_registry()."""
    if binary == "docker-registry":
        return require_registry()
    return require_binary(binary, DOCKER_REGISTRY_HINT)


def require_skopeo(binary: str = "skopeo") -> str:
    return require_binary(binary, SKOPEO_HINT)


def require_dockerd(binary: str = "dockerd") -> str:
    return require_binary(binary, DOCKERD_HINT)


def require_containerd(binary: str = "containerd") -> str:
    return require_binary(binary, CONTAINERD_HINT)


def require_ctr(binary: str = "ctr") -> str:
    return require_binary(binary, CONTAINERD_HINT)
