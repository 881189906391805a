"""Facts about Docker Hub that the lab, the fault proxy and the clients share.

Each is written once, here. They are what production clients are configured
with; the lab answers for these names so a mirror's configuration is exactly
production's.
"""

from __future__ import annotations

DOCKER_IO = "docker.io"
"""The registry domain of Hub image references (docker.io/library/alpine)."""
REFERENCE_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
"""Domains a reference may name and still mean Docker Hub."""

REGISTRY_HOST = "registry-1.docker.io"
REGISTRY_URL = f"https://{REGISTRY_HOST}"
AUTH_HOST = "auth.docker.io"
CDN_HOST = "production.cloudflare.docker.com"
CDN_SUFFIX = ".cloudflare.docker.com"
"""Hub redirects blob GETs to hosts under this suffix."""
INDEX_SERVER = "https://index.docker.io/v1/"
"""Where `docker login` logs in for Docker Hub (the daemon's auth config key)."""
DAEMON_HUB_NAMES = ("registry-1.docker.io", "index.docker.io", "docker.io")
"""How dockerd's logs and errors may name Hub."""

TOKEN_REALM = f"https://{AUTH_HOST}/token"
TOKEN_SERVICE = "registry.docker.io"
TOKEN_ISSUER = AUTH_HOST
TOKEN_LIFETIME_S = 300
"""Hub's tokens' expires_in."""

RATE_LIMIT_WINDOW_S = 21600
"""Six hours: the window of Hub's pull rate limit."""
