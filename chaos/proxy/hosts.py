"""Which hosts the proxy forwards: Docker Hub's, unless told otherwise.

Listening beyond loopback (`--listen-host 0.0.0.0`) and intercepting TLS, a
proxy that forwards any host is an open proxy for anyone who can reach it. So
by default it forwards only the hosts of Hub's services, the ones it can route
and fault (registry-1.docker.io, auth.docker.io, the CDN under
*.cloudflare.docker.com: chaos.vocab.endpoints.role_of), plus any host globs of
`hub_allow_hosts`; everything else gets 403. `hub_allow_any_host` opens it.
"""

from __future__ import annotations

import fnmatch
import re

from chaos.errors import quoted
from chaos.vocab.endpoints import role_of

_HOST_GLOB = re.compile(r"^[a-z0-9.*?-]+$")


def parse_host_globs(text: str) -> tuple[str, ...]:
    """"*.example.com, mirror.local" -> the globs, lowercased; ValueError naming a bad one."""
    globs = []
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            if text.strip():
                raise ValueError("empty host between commas")
            continue
        if not _HOST_GLOB.match(item):
            raise ValueError(f"bad host glob {quoted(item)} (letters, digits, '.', '-', '*', '?'; no port)")
        globs.append(item)
    return tuple(globs)


class HostPolicy:
    """Whether a host (as the client addressed it) may be forwarded."""

    def __init__(self, any_host: bool = False, extra: tuple[str, ...] = ()):
        self.any_host = any_host
        self.extra = extra

    def allows(self, host: str) -> bool:
        if self.any_host:
            return True
        host = host.lower().rstrip(".")
        return role_of(host) != "other" or any(fnmatch.fnmatchcase(host, glob) for glob in self.extra)
