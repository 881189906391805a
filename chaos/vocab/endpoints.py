"""Name what a request to Docker Hub is for: which Hub service (role) and which registry endpoint (kind).

Faults match on these names and the event tap reports them, so a scenario can
say "fail manifest GETs for library/*" without knowing URL shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from chaos.vocab.hub import AUTH_HOST, CDN_HOST, CDN_SUFFIX, REGISTRY_HOST

ROLES = ("registry", "auth", "cdn", "other")
KINDS = (
    "connect",
    "ping",
    "token",
    "manifest",
    "blob",
    "blob_upload",
    "tags",
    "catalog",
    "referrers",
    "other",
)
# Narrower names a fault may select by (match.endpoints); "manifest" matches both.
MANIFEST_BY = ("manifest_tag", "manifest_digest")
ENDPOINT_SELECTORS = KINDS + MANIFEST_BY
# What `upstream:` and `tap.counts` may count: requests per kind, plus two totals.
COUNTABLE = KINDS + ("blob_bytes", "requests")

# Repository name grammar from distribution/reference: lowercase components separated by "/".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
# Hub's CDN paths carry the digest as .../blobs/sha256/ab/<hex>/data; accept sha256:<hex> too.
_CDN_DIGEST = re.compile(r"sha256(?::|/[a-f0-9]{2}/)([a-f0-9]{64})")

# Order matters: blob uploads before blobs, and every name group is greedy so the
# *last* "/manifests/" wins, as in distribution's router.
_ROUTES = (
    ("blob_upload", re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/uploads(?:/(?P<ref>[^/]*))?$")),
    ("manifest", re.compile(rf"^/v2/(?P<name>{_NAME})/manifests/(?P<ref>[^/]+)$")),
    ("blob", re.compile(rf"^/v2/(?P<name>{_NAME})/blobs/(?P<ref>[^/]+)$")),
    ("tags", re.compile(rf"^/v2/(?P<name>{_NAME})/tags/list$")),
    ("referrers", re.compile(rf"^/v2/(?P<name>{_NAME})/referrers/(?P<ref>[^/]+)$")),
)


@dataclass(frozen=True)
class Endpoint:
    role: str  # registry | auth | cdn | other
    kind: str  # one of KINDS
    repository: str | None = None  # "library/alpine"
    reference: str | None = None  # tag or digest
    by: str | None = None  # "tag" | "digest" when reference is set

    def selected_by(self, selectors: tuple[str, ...]) -> bool:
        """Whether match.endpoints `selectors` name this endpoint (ENDPOINT_SELECTORS)."""
        if self.kind in selectors:
            return True
        return self.kind == "manifest" and f"manifest_{self.by}" in selectors


def role_of(host: str) -> str:
    """The Hub service a host name belongs to ("other" for anything else)."""
    host = host.lower().rstrip(".")
    if host == REGISTRY_HOST:
        return "registry"
    if host == AUTH_HOST:
        return "auth"
    if host == CDN_HOST or host.endswith(CDN_SUFFIX):
        return "cdn"
    return "other"


def classify(host: str, method: str, path: str) -> Endpoint:
    """Classify one request; `path` may carry its query string (as mitmproxy's does)."""
    role = role_of(host)
    if method.upper() == "CONNECT":
        return Endpoint(role, "connect")
    split = urlsplit(path)
    route = split.path
    if role == "auth":
        if route.rstrip("/") == "/token":
            return Endpoint(role, "token", repository=_scope_repository(split.query))
        return Endpoint(role, "other")
    if role == "cdn":
        match = _CDN_DIGEST.search(route)
        digest = f"sha256:{match.group(1)}" if match else None
        return Endpoint(role, "blob", reference=digest, by="digest" if digest else None)
    return _classify_registry_path(role, route)


def _classify_registry_path(role: str, route: str) -> Endpoint:
    if route in ("/v2", "/v2/"):
        return Endpoint(role, "ping")
    if route == "/v2/_catalog":
        return Endpoint(role, "catalog")
    for kind, pattern in _ROUTES:
        match = pattern.match(route)
        if match is None:
            continue
        repository = match.group("name")
        ref = match.groupdict().get("ref") or None
        if kind == "blob_upload":
            # The upload session id is not content; keep it out of `reference`.
            return Endpoint(role, kind, repository)
        if ref is None:
            by = None
        elif _DIGEST.match(ref):
            by = "digest"
        else:
            by = "tag" if kind == "manifest" else None
        return Endpoint(role, kind, repository, ref, by)
    return Endpoint(role, "other")


def _scope_repository(query: str) -> str | None:
    """First repository named by a token request's scope ("repository:NAME:pull")."""
    for value in parse_qs(query).get("scope", []):
        for scope in value.split(" "):
            if scope.startswith("repository:") and scope.count(":") >= 2:
                name = scope[len("repository:") :].rsplit(":", 1)[0]
                if re.fullmatch(_NAME, name):
                    return name
    return None
