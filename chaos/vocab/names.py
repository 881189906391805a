"""Names the scenario language, the lab, the clients and the reports share."""

from __future__ import annotations

ENGINES = ("builtin", "docker", "skopeo", "containerd")
"""Who pulls: the builtin emulation of a Docker daemon, a real dockerd, skopeo
(containers/image: podman, CRI-O), containerd as Kubernetes nodes pull (ctr
with a hosts.toml)."""

COMPONENTS = ("mirror", "hub", "auth", "proxy", "cdn", "push-registry")
"""Lab components a `restart` step may name."""

MIRROR = "mirror"
HUB = "hub"
SERVED_BY = (MIRROR, HUB)
"""Who served a pull: the mirror, or Hub itself after the client fell back."""

PHASES = ("steady_state_before", "steps", "rollback", "steady_state_after")

ORIGINS = ("mirror", "client", "push-registry", "unknown")
"""Who sent a request upstream through the fault proxy: the mirror filling its
cache, the client engine falling back to Hub itself, the push registry, or
a client of a listener that names no origin (the proxy run on its own)."""
