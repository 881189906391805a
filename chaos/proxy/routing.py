"""Re-route Hub's host names to lab upstreams, keeping what the client asked for.

The client (a mirror, a daemon) believes it talks to https://registry-1.docker.io;
the lab hub is plain HTTP on loopback. We keep the Host header the client sent
and add X-Forwarded-Proto so the distribution registry behind builds the URLs in
its Location and WWW-Authenticate headers exactly as Hub would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from mitmproxy import http

ROUTABLE_ROLES = ("registry", "auth", "cdn")


@dataclass(frozen=True)
class Upstream:
    scheme: str  # "http" | "https"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_routes(text: str) -> Mapping[str, Upstream]:
    """Parse "registry=http://127.0.0.1:5001,auth=http://127.0.0.1:5002".

    Empty text means live mode: no re-routing. Raises ValueError naming the bad item.
    """
    routes: dict[str, Upstream] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            if text.strip():
                raise ValueError("empty route between commas")
            continue
        role, sep, url = item.partition("=")
        role = role.strip()
        if not sep:
            raise ValueError(f"route {item!r} is not ROLE=URL")
        if role not in ROUTABLE_ROLES:
            raise ValueError(
                f"unknown role {role!r} (expected one of: {', '.join(ROUTABLE_ROLES)})"
            )
        if role in routes:
            raise ValueError(f"role {role!r} routed twice")
        routes[role] = parse_upstream(url.strip())
    return MappingProxyType(routes)


def parse_roles(text: str) -> tuple[str, ...]:
    """"registry,auth" -> ("registry", "auth"); "" -> (); ValueError naming an unknown role."""
    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROUTABLE_ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r} (expected one of: {', '.join(ROUTABLE_ROLES)})")
    return roles


def parse_upstream(url: str) -> Upstream:
    """An upstream base URL: scheme, host and explicit port, nothing else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"upstream {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"upstream {url!r} has no host")
    try:
        port = parts.port
    except ValueError as err:  # urlsplit raises on ports out of range or not numeric
        raise ValueError(f"upstream {url!r}: {err}") from None
    if port is None or port == 0:
        raise ValueError(f"upstream {url!r} needs an explicit port")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"upstream {url!r} must be scheme://host:port only")
    return Upstream(parts.scheme, parts.hostname, port)


def apply_route(flow: http.HTTPFlow, upstream: Upstream) -> None:
    """Send `flow` to `upstream` while the request keeps the Host the client sent."""
    request = flow.request
    host_header = request.host_header or request.pretty_host
    original_scheme = request.scheme
    # Setting .host rewrites the Host header and authority; restore them after.
    request.scheme = upstream.scheme
    request.host = upstream.host
    request.port = upstream.port
    request.host_header = host_header
    # Lower case: HTTP/2 forbids capitals (mitmproxy would log a line per request
    # fixing it) and HTTP/1.1 does not care.
    request.headers["x-forwarded-proto"] = original_scheme
