"""auth-deny: auth.docker.io fails while the registry stays up.

Acts only on token requests (role auth, endpoint token, GET or POST /token);
every other request passes untouched, so a fault without a match clause is safe.

Modes:
- bad-credentials: 401 `{"details": "incorrect username or password"}`, Hub's
  answer to a wrong password. Only requests that carry credentials get it (a
  Basic Authorization header, or a POST, which always carries a password or a
  refresh token): Hub never tells an anonymous client its password is wrong.
- forbidden: 403 `{"details": ...}` to every token request.
- unavailable: `status` (a 5xx, default 503) with the load balancer's HTML page,
  what clients saw while Hub's auth backends were down.
- no-scope: the token service issues a token that grants nothing. Done
  honestly: the `scope` parameters are taken out of the request before it goes
  upstream, so the real token service signs a token with empty access and the
  registry then answers 401 insufficient_scope ("pull access denied").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

from mitmproxy import http

from chaos.errors import quoted
from chaos.faults.hub_errors import balancer_page, endpoint_of, token_error
from chaos.faults.kind import FaultKind, free_text
from chaos.faults.registry import register
from chaos.faults.spec import FaultSpecError

MODES = ("bad-credentials", "forbidden", "unavailable", "no-scope")
WRONG_CREDENTIALS = "incorrect username or password"
FORBIDDEN = "access to the requested resource is forbidden"
FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024  # token forms are tiny; a bigger body passes unchanged


@register
class AuthDeny(FaultKind):
    name = "auth-deny"

    @dataclass(frozen=True)
    class Params:
        mode: str
        status: int | None = None  # unavailable only: a 5xx, default 503
        details: str | None = free_text()  # bad-credentials, forbidden: replaces the `details` text

        def __post_init__(self) -> None:
            if self.mode not in MODES:
                raise FaultSpecError("params.mode", f"unknown mode {quoted(self.mode)} (expected one of: {', '.join(MODES)})")
            if self.status is not None:
                if self.mode != "unavailable":
                    raise FaultSpecError("params.status", f"only mode 'unavailable' takes a status, not {quoted(self.mode)}")
                if not 500 <= self.status <= 599:
                    raise FaultSpecError("params.status", f"must be a 5xx status, got {self.status}")
            if self.details is not None:
                if self.mode not in ("bad-credentials", "forbidden"):
                    raise FaultSpecError(
                        "params.details", f"only modes 'bad-credentials' and 'forbidden' take details, not {quoted(self.mode)}"
                    )
                if not self.details.strip():
                    raise FaultSpecError("params.details", "must not be empty")

    def on_request(self, flow: http.HTTPFlow) -> bool:
        endpoint = endpoint_of(flow)
        if (endpoint.role, endpoint.kind) != ("auth", "token"):
            return False
        mode = self.params.mode
        if mode == "bad-credentials":
            if not _carries_credentials(flow.request):
                return False
            flow.response = token_error(flow, 401, self.params.details or WRONG_CREDENTIALS)
        elif mode == "forbidden":
            flow.response = token_error(flow, 403, self.params.details or FORBIDDEN)
        elif mode == "unavailable":
            flow.response = balancer_page(flow, self.params.status or 503)
        else:
            return _strip_scopes(flow.request)
        return True


def _carries_credentials(request: http.Request) -> bool:
    return request.method.upper() == "POST" or request.headers.get("Authorization", "").lower().startswith("basic ")


def _strip_scopes(request: http.Request) -> bool:
    """Remove every `scope` from the query and, for Docker's OAuth POST, the form."""
    acted = False
    if "scope" in request.query:
        del request.query["scope"]
        acted = True
    if request.method.upper() == "POST" and request.headers.get("Content-Type", "").split(";")[0].strip() == FORM:
        if request.raw_content is not None:
            # The body is already here (a caller that ran after it was read).
            stripped = _without_scopes(request.raw_content)
            acted = acted or stripped != request.raw_content
            request.raw_content = stripped
        else:
            request.stream = _ScopeStripper()
            acted = True
    return acted


class _ScopeStripper:
    """`request.stream` callable: hold the form body, then send it without scopes.

    The request headers, Content-Length included, went upstream before the body,
    so the body keeps its length: the removed bytes become '&', which form
    parsers (Go's url.ParseQuery, Python's parse_qs) skip as empty pairs.
    """

    def __init__(self) -> None:
        self._held = bytearray()
        self._passing = False

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        if self._passing:
            return chunk
        if chunk:
            self._held += chunk
            if len(self._held) > MAX_FORM_BYTES:
                self._passing = True  # not a token form: do not hold it any longer
                return bytes(self._held)
            return []
        return _without_scopes(bytes(self._held))  # b"" marks the end of the body


def _without_scopes(body: bytes) -> bytes:
    """`body` without its scope pairs, padded with '&' to its length. The other
    pairs stay byte for byte: re-encoding them could make the body longer."""
    pairs = body.split(b"&")
    kept = b"&".join(p for p in pairs if unquote_plus(p.split(b"=", 1)[0].decode("latin-1")) != "scope")
    return kept + b"&" * (len(body) - len(kept))
