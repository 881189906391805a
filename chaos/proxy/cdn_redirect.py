"""CdnRedirect: blob GETs to the lab hub answer `307` to the blob CDN, as Docker Hub's do.

Hub never sends layer bytes from registry-1.docker.io: a blob GET gets
`307 Temporary Redirect` to a signed, expiring URL on
production.cloudflare.docker.com, and the client follows it without its
registry token. This addon makes the lab hub (a plain distribution registry)
do the same; chaos.lab.cdn_service serves the URLs it mints, and HubChaos's
`cdn=` route sends the CDN host there, so faults can hit the CDN alone.

The hub registry must still decide whether the client may read the blob (a
private blob without a token gets its 401 challenge) but must not send the
bytes. So a blob GET goes upstream with `Range: bytes=0-0` in place of the
client's own Range, if any: when the client may read it the registry answers
206 and one byte, which is swallowed and replaced by a 307 with an empty body;
any other answer (401, 404, 5xx) is exactly what the client's GET would have
got, body included, and passes through untouched. (A HEAD would cost not even
that byte, but its 401 and 404 carry the Content-Length of a body they do not
send, and the client asked for a GET.) Range GETs (resumed downloads) are
redirected too, as Hub's are: the client sends its Range again to the CDN,
which serves a single range (206) and answers several with the whole blob
(200), as RFC 9110 allows. Client HEADs are left to the registry.

Order: list this addon *before* HubChaos. Its `request` hook runs after
HubChaos's requestheaders (classification, faults, routing, holds), so faults
see the client's GET as sent, Range and all; the probe header goes on last,
right before the request goes upstream. Its `responseheaders` hook runs before
HubChaos's, so the faults and the byte counter see the response the client
gets: a body fault finds a 307 without a body and leaves it alone (neither
acting on the hidden probe byte nor counting it as applied), and the tap
records blob, GET, 307, 0 bytes. The request method is never changed, and the
flow keeps the client's own headers once the probe's answer is in.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http

from chaos.errors import UsageError, quoted
from chaos.proxy.addon import TARGET_HOST
from chaos.proxy.cdn_urls import blob_path, read_secret, signed_blob_url
from chaos.proxy.reporting import HubOptionsError, one_line_option_errors, settle_deferred_options
from chaos.proxy.routing import parse_routes
from chaos.vocab.endpoints import classify, role_of
from chaos.vocab.hub import CDN_HOST

log = logging.getLogger(__name__)

PROBE = "hub_chaos.cdn_probe"  # flow.metadata: digest of a blob GET sent upstream as a probe
CLIENT_RANGE = "hub_chaos.client_range"  # flow.metadata: the client's own Range and If-Range headers
_RANGE_HEADERS = ("Range", "If-Range")
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
        one_line_option_errors()  # this addon loads first
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
        for problem in settle_deferred_options(loader.master.options, ("hub_cdn_host", "hub_cdn_secret_file")):
            log.error(problem)

    def configure(self, updated: set[str]) -> None:
        options = ctx.options
        if "hub_cdn_host" in updated:
            try:
                self.host = parse_cdn_host(options.hub_cdn_host)
            except ValueError as err:
                raise HubOptionsError(
                    f"Cannot use hub_cdn_host option {quoted(options.hub_cdn_host, 200)}: {err}"
                ) from None
        if "hub_cdn_secret_file" in updated:
            path = options.hub_cdn_secret_file
            try:
                self.secret = read_secret(Path(path).expanduser()) if path else None
            except UsageError as err:
                raise HubOptionsError(f"Cannot use hub_cdn_secret_file option {quoted(path, 200)}: {err}") from None
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
            raise HubOptionsError(
                f"Cannot use hub_cdn_secret_file option {options.hub_cdn_secret_file!r} without a cdn= route"
                f" in hub_routes (currently {routes_text!r}): redirected clients would go to the real"
                f" {self.host}; add cdn=http://HOST:PORT of chaos.lab.cdn_service or clear hub_cdn_host"
            )

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not self.enabled:
            return
        request = flow.request
        if request.method != "GET":
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
        # If-Range too: a validator that no longer matches would make the probe a whole-blob GET.
        flow.metadata[CLIENT_RANGE] = {name: request.headers.get(name) for name in _RANGE_HEADERS}
        request.headers.pop("If-Range", None)
        request.headers[_name(flow, "Range")] = PROBE_RANGE
        flow.metadata[PROBE] = endpoint.reference

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        digest = flow.metadata.get(PROBE)
        if digest is None:
            return
        # The probe header did its job upstream; the flow keeps what the client sent.
        _restore_client_range(flow)
        if flow.error or not flow.live or flow.response is None:
            return
        upstream = flow.response
        if upstream.status_code not in _READABLE:
            return
        location = signed_blob_url(self.host, digest, self.secret or b"", now=time.time())
        headers = {_name(flow, name): upstream.headers[name] for name in _COPIED_HEADERS if name in upstream.headers}
        headers.update({_name(flow, "Location"): location, _name(flow, "Content-Length"): "0"})
        redirect = http.Response.make(307, b"", headers)
        redirect.http_version = upstream.http_version
        redirect.stream = _swallow
        flow.response = redirect
        flow.metadata[REDIRECTED_TO] = location

    def error(self, flow: http.HTTPFlow) -> None:
        if PROBE in flow.metadata:
            _restore_client_range(flow)


def _name(flow: http.HTTPFlow, header: str) -> str:
    """A header name as the flow's HTTP version spells it: HTTP/2 forbids
    capitals (mitmproxy would log a line for every header it lowercases)."""
    return header.lower() if flow.request.http_version == "HTTP/2.0" else header


def _restore_client_range(flow: http.HTTPFlow) -> None:
    if CLIENT_RANGE not in flow.metadata:
        return
    for name, value in flow.metadata.pop(CLIENT_RANGE).items():
        if value is None:
            flow.request.headers.pop(name, None)
        else:
            flow.request.headers[_name(flow, name)] = value
