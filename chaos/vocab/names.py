"""Names the scenario language, the lab, the clients and the reports share."""

from __future__ import annotations

ENGINES = ("builtin", "docker", "skopeo")
"""Who pulls: the builtin emulation of a Docker daemon, a real dockerd, skopeo."""

COMPONENTS = ("mirror", "hub", "auth", "proxy", "cdn", "push-registry")
"""Lab components a `restart` step may name."""

MIRROR = "mirror"
HUB = "hub"
SERVED_BY = (MIRROR, HUB)
"""Who served a pull: the mirror, or Hub itself after the client fell back."""

PHASES = ("steady_state_before", "steps", "rollback", "steady_state_after")
