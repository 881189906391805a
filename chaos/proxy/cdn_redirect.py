"""CdnRedirect: blob GETs to the lab hub answer `307` to the blob CDN, as Docker Hub's do.

Hub never sends layer bytes from registry-1.docker.io: a blob GET gets
`307 Temporary Redirect` to a signed, expiring URL on
production.cloudflare.docker.com, and the client follows it without its
registry token. This addon makes the lab hub (a plain distribution registry)
do the same; chaos.lab.cdn_service serves the URLs it mints, and HubChaos's
`cdn=` route sends the CDN host there, so faults can hit the CDN alone.

The hub registry must still decide whether the client may read the blob (a
private blob without a token gets its 401 challenge) but must not send the
bytes. So a plain blob GET goes upstream with `Range: bytes=0-0` added: when
the client may read it the registry answers 206 and one byte, which is
swallowed and replaced by a 307 with an empty body; any other answer (401,
404, 5xx) is exactly what the client's GET would have got, body included, and
passes through untouched. (A HEAD would cost not even that byte, but its 401
and 404 carry the Content-Length of a body they do not send, and the client
asked for a GET.) Client HEADs and Range GETs (resumed downloads) are left to
the registry as they are.

Order: list this addon after HubChaos. HubChaos classifies, runs faults and
routes in requestheaders and installs its byte counter in responseheaders;
these hooks run after each of those, so faults see the client's GET, the
counter never sees the swallowed byte, and the tap records what the client
saw: blob, GET, 307, 0 bytes. The request method is never changed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from chaos.errors import UsageError
from chaos.proxy.cdn_urls import blob_path, read_secret, signed_blob_url
from chaos.vocab.hub import CDN_HOST
from chaos.proxy.addon import TARGET_HOST
from chaos.vocab.endpoints import classify, role_of
from chaos.proxy.routing import parse_routes

PROBE = "hub_chaos.cdn_probe"  # flow.metadata: digest of a blob GET sent upstream as a probe
REDIRECTED_TO = "hub_chaos.cdn_location"  # flow.metadata: the Location a blob GET was answered with
PROBE_RANGE = "bytes=0-0"
# 206: the probe answered; 200: a registry that ignores Range; 416: an empty blob.
# Each means "this client may read the blob".
_READABLE = (200, 206, 416)
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_COPIED_HEADERS = ("Docker-Distribution-Api-Version", "Date")


def _swallow(chunk: bytes) -> bytes:
    # The probe byte (or, from a registry that ignored Range, the whole blob)
    # must not follow a 307 that promised an empty body.
    return b""


def parse_cdn_host(value: str) -> str:
    """A CDN host name the proxy serves as role cdn; "" disables. ValueError otherwise."""
    host = value.strip().lower()
    if not host:
        return ""
    if not _HOSTNAME.match(host):
        raise ValueError("expected a bare host name (no scheme, port or path)")
    if role_of(host) != "cdn":
        raise ValueError(
            f"the proxy serves only {CDN_HOST} and *.cloudflare.docker.com as the CDN;"
            " redirects elsewhere would leave the lab"
        )
    return host


class CdnRedirect:
    def __init__(self) -> None:
        self.host = CDN_HOST
        self.secret: bytes | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.secret)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "hub_cdn_host",
            str,
            CDN_HOST,
            """
            Answer blob GETs to registry-1.docker.io with 307 to this blob CDN host, as
            Docker Hub does (production.cloudflare.docker.com or *.cloudflare.docker.com,
            which hub_routes' cdn= route serves). Empty disables the redirects.
            """,
        )
        loader.add_option(
            "hub_cdn_secret_file",
            str,
            "",
            """
            File holding the secret the redirect URLs are signed with; the CDN
            (python -m chaos.lab.cdn_service --secret-file) checks them with the same
            file, and hub_routes must route cdn= to it. Empty: no redirects.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        options = ctx.options
        if "hub_cdn_host" in updated:
            try:
                self.host = parse_cdn_host(options.hub_cdn_host)
            except ValueError as err:
                raise exceptions.OptionsError(
                    f"Cannot use hub_cdn_host option {options.hub_cdn_host!r}: {err}"
                ) from err
        if "hub_cdn_secret_file" in updated:
            path = options.hub_cdn_secret_file
            try:
                self.secret = read_secret(Path(path).expanduser()) if path else None
            except UsageError as err:
                raise exceptions.OptionsError(
                    f"Cannot use hub_cdn_secret_file option {path!r}: {err}"
                ) from err
        if updated & {"hub_cdn_host", "hub_cdn_secret_file", "hub_routes"} and self.enabled:
            self._require_cdn_route(options)

    def _require_cdn_route(self, options: Any) -> None:
        # A signed lab URL sent to the real CDN would leave the machine (and fail there).
        routes_text = options.hub_routes if "hub_routes" in options else ""
        try:
            routed = "cdn" in parse_routes(routes_text)
        except ValueError:
            return  # HubChaos rejects the bad hub_routes value itself, naming it
        if not routed:
            raise exceptions.OptionsError(
                f"Cannot use hub_cdn_secret_file option {options.hub_cdn_secret_file!r} without a cdn= route"
                f" in hub_routes (currently {routes_text!r}): redirected clients would go to the real"
                f" {self.host}; add cdn=http://HOST:PORT of chaos.lab.cdn_service or clear hub_cdn_host"
            )

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not self.enabled:
            return
        request = flow.request
        if request.method != "GET" or "Range" in request.headers:
            return
        # HubChaos has already routed the flow to the lab hub: the host the
        # client addressed is in its metadata (and still in request.host without it).
        endpoint = classify(flow.metadata.get(TARGET_HOST, request.host), "GET", request.path)
        if endpoint.role != "registry" or endpoint.kind != "blob":
            return
        try:
            blob_path(endpoint.reference or "")
        except ValueError:
            return  # the CDN path has room for sha256 only; other digests stay with the registry
        request.headers["Range"] = PROBE_RANGE
        flow.metadata[PROBE] = endpoint.reference

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        digest = flow.metadata.get(PROBE)
        if digest is None or flow.error or not flow.live or flow.response is None:
            return
        # The probe header did its job upstream; the flow keeps what the client sent.
        flow.request.headers.pop("Range", None)
        upstream = flow.response
        if upstream.status_code not in _READABLE:
            return
        location = signed_blob_url(self.host, digest, self.secret or b"", now=time.time())
        headers = {name: upstream.headers[name] for name in _COPIED_HEADERS if name in upstream.headers}
        redirect = http.Response.make(307, b"", {**headers, "Location": location, "Content-Length": "0"})
        redirect.http_version = upstream.http_version
        redirect.stream = _swallow
        flow.response = redirect
        flow.metadata[REDIRECTED_TO] = location
