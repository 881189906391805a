"""The programs the lab runs that the Debian system provides, each found with a
one-line hint naming the package to install (EnvironmentProblem, exit 3).

The engines that run these programs (chaos.clients, above the lab) can use
the same functions, so a missing binary reads the same whoever finds it first.
"""

from __future__ import annotations

from chaos.lab.process import require_binary

DOCKER_REGISTRY_HINT = "install the Debian package docker-registry (apt-get install docker-registry)"
SKOPEO_HINT = "engine skopeo cannot run: install the Debian package skopeo (apt-get install skopeo), or use --engine builtin"
DOCKERD_HINT = "engine docker cannot run: install the Debian package docker.io (apt-get install docker.io), or use --engine builtin"


def require_docker_registry(binary: str = "docker-registry") -> str:
    """The distribution registry (hub, mirror and push registry all run it)."""
    return require_binary(binary, DOCKER_REGISTRY_HINT)


def require_skopeo(binary: str = "skopeo") -> str:
    return require_binary(binary, SKOPEO_HINT)


def require_dockerd(binary: str = "dockerd") -> str:
    return require_binary(binary, DOCKERD_HINT)
