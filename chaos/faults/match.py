"""Match: which requests a fault applies to (host, role, endpoint, method,
repository, client address, origin). Parsing and validating a match from plain
data is in spec.py; whether a matching request is hit is the trigger's call
(triggers.py).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

from chaos.vocab.endpoints import Endpoint

UNKNOWN = "unknown"
"""The origin of a request from a listener hub_origins names no origin for (chaos.vocab.names.ORIGINS)."""


@dataclass(frozen=True)
class Match:
    """Which requests a fault applies to; an empty criterion matches everything.

    A CONNECT carries only a host, so a fault narrowed by endpoint, method or
    repository never matches one: it leaves tunnels up and acts per request.
    `endpoints` takes the kinds from chaos.vocab.endpoints.KINDS plus
    manifest_tag and manifest_digest ("manifest" matches both). `clients` takes
    client IP addresses, globs ("127.0.0.*") or CIDRs ("127.0.0.0/30").
    `origins` takes chaos.vocab.names.ORIGINS: who sent the request, known by
    the proxy listener it came in on (the addon's hub_origins option).
    """

    roles: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # host names or globs ("*.docker.io")
    endpoints: tuple[str, ...] = ()  # chaos.vocab.endpoints.ENDPOINT_SELECTORS
    methods: tuple[str, ...] = ()
    repository: str | None = None  # glob: "library/*"
    clients: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()  # chaos.vocab.names.ORIGINS

    @property
    def whole_connections(self) -> bool:
        """Whether it matches connections as a whole (CONNECTs too): nothing
        narrows it to some requests of a connection."""
        return not (self.endpoints or self.methods or self.repository)

    def matches(
        self, host: str, method: str, endpoint: Endpoint, client: str | None = None, origin: str = UNKNOWN
    ) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        return self.may_match(host, endpoint, client, origin)

    def may_match(self, host: str, endpoint: Endpoint, client: str | None = None, origin: str = UNKNOWN) -> bool:
        """Whether a request for `endpoint` on `host` could match, whatever its method.

        For a connection the proxy relays unopened (chaos.proxy.passthrough):
        its requests are never seen, only the host, who sent them and what the
        host can serve (`endpoint`: on the CDN every request is a blob GET or HEAD
        with no repository).
        """
        host = host.lower().rstrip(".")
        if self.roles and endpoint.role not in self.roles:
            return False
        if self.hosts and not any(fnmatch.fnmatchcase(host, h) for h in self.hosts):
            return False
        if self.endpoints and not endpoint.selected_by(self.endpoints):
            return False
        if self.repository is not None and not (
            endpoint.repository is not None
            and fnmatch.fnmatchcase(endpoint.repository, self.repository)
        ):
            return False
        if self.clients and not (client is not None and any(_client_matches(p, client) for p in self.clients)):
            return False
        if self.origins and origin not in self.origins:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "roles": list(self.roles),
            "hosts": list(self.hosts),
            "endpoints": list(self.endpoints),
            "methods": list(self.methods),
            "repository": self.repository,
            "clients": list(self.clients),
            "origins": list(self.origins),
        }


def _client_matches(pattern: str, client: str) -> bool:
    if "/" in pattern:
        try:
            return ipaddress.ip_address(client) in _network(pattern)
        except ValueError:
            return False
    return fnmatch.fnmatchcase(client.lower(), pattern)


@functools.lru_cache(maxsize=256)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)
