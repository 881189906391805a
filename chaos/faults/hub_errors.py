"""What Docker Hub's error answers look like on the wire, for the kinds that forge them.

Registry errors (registry-1.docker.io) are distribution's JSON,
`{"errors":[{"code","message","detail"}]}`, with Hub's bearer challenge on a 401.
The token service (auth.docker.io) answers `{"details": "..."}` instead, and
when its backends are gone the load balancer in front of it answers an HTML page.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import status_codes

from chaos.vocab.codes import (
    BLOB_UNKNOWN,
    DENIED,
    HUB_RATE_LIMIT_MESSAGE,
    MANIFEST_UNKNOWN,
    MESSAGES,
    NAME_UNKNOWN,
    TOOMANYREQUESTS,
    UNAUTHORIZED,
    UNAVAILABLE,
    UNKNOWN,
    UNSUPPORTED,
)
from chaos.vocab.endpoints import Endpoint, classify
from chaos.vocab.hub import TOKEN_REALM, TOKEN_SERVICE

JSON = "application/json"

NO_DETAIL = object()
"""error_document() leaves the `detail` key out (Hub's 429 body has none)."""

# What HAProxy (in front of Hub's services) says when no backend answers.
_BALANCER_TEXT = {
    500: "An internal server error occurred.",
    502: "The server returned an invalid or incomplete response.",
    503: "No server is available to handle this request.",
    504: "The server didn't respond in time.",
}


def endpoint_of(flow: http.HTTPFlow) -> Endpoint:
    """What `flow` asks Hub for. Call it before routing (in on_request): routing
    rewrites request.host to the lab's address, which names no Hub service."""
    request = flow.request
    return classify(request.host, request.method, request.path)


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def bearer_challenge(scope: str | None = None, error: str | None = None) -> str:
    """Hub's WWW-Authenticate value: realm and service, then scope and error when given."""
    value = f'Bearer realm="{TOKEN_REALM}",service="{TOKEN_SERVICE}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def default_error(status: int, endpoint: Endpoint) -> tuple[str, str, Any]:
    """(code, message, detail) a registry sends with `status` for `endpoint`, as
    distribution fills them in (detail shapes from its handlers)."""
    repository = endpoint.repository
    if status == 401:
        return UNAUTHORIZED, MESSAGES[UNAUTHORIZED], _access_detail(repository)
    if status == 403:
        return DENIED, MESSAGES[DENIED], _access_detail(repository)
    if status == 404:
        if endpoint.kind == "manifest":
            if endpoint.by == "tag":
                detail: Any = {"Tag": endpoint.reference}
            else:
                detail = {"Name": repository, "Revision": endpoint.reference}
            return MANIFEST_UNKNOWN, MESSAGES[MANIFEST_UNKNOWN], detail
        if endpoint.kind == "blob":
            return BLOB_UNKNOWN, MESSAGES[BLOB_UNKNOWN], endpoint.reference
        return NAME_UNKNOWN, MESSAGES[NAME_UNKNOWN], {"name": repository} if repository else None
    if status == 405:
        return UNSUPPORTED, MESSAGES[UNSUPPORTED], None
    if status == 429:
        return TOOMANYREQUESTS, HUB_RATE_LIMIT_MESSAGE, None
    if status == 503:
        return UNAVAILABLE, MESSAGES[UNAVAILABLE], None
    return UNKNOWN, MESSAGES[UNKNOWN], None


def _access_detail(repository: str | None) -> list[dict[str, str]] | None:
    # distribution lists the access the request lacked; Hub's bodies show it.
    if repository is None:
        return None
    return [{"Type": "repository", "Class": "", "Name": repository, "Action": "pull"}]


def error_document(code: str, message: str, detail: Any = NO_DETAIL) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not NO_DETAIL:
        error["detail"] = detail
    return {"errors": [error]}


def json_response(
    flow: http.HTTPFlow, status: int, document: Any, headers: dict[str, str] | None = None
) -> http.Response:
    """A JSON answer to `flow`. A HEAD gets the headers (Content-Length included)
    and no body, as servers answer HEAD: body bytes after a HEAD answer would be
    read as the start of the next response on a kept-alive connection."""
    body = json.dumps(document, separators=(",", ":")).encode()
    return _response(flow, status, body, {"Content-Type": JSON, **(headers or {})})


def registry_error(
    flow: http.HTTPFlow,
    status: int,
    code: str,
    message: str,
    detail: Any = NO_DETAIL,
    headers: dict[str, str] | None = None,
) -> http.Response:
    """A registry error answer with distribution's headers; a 401 carries Hub's
    challenge (error="insufficient_scope" when the request already had a token,
    which is what Hub says to a token that does not grant the repository)."""
    extra = {"Docker-Distribution-Api-Version": "registry/2.0"}
    if status == 401:
        endpoint = endpoint_of(flow)
        scope = pull_scope(endpoint.repository) if endpoint.repository else None
        has_token = flow.request.headers.get("Authorization", "").lower().startswith("bearer ")
        extra["WWW-Authenticate"] = bearer_challenge(scope, "insufficient_scope" if has_token and scope else None)
    extra.update(headers or {})
    return json_response(flow, status, error_document(code, message, detail), extra)


def token_error(flow: http.HTTPFlow, status: int, details: str) -> http.Response:
    """auth.docker.io's refusal: `{"details": "..."}`."""
    return json_response(flow, status, {"details": details})


def balancer_page(flow: http.HTTPFlow, status: int) -> http.Response:
    """The HTML a load balancer answers for a 5xx when the service behind it is down."""
    reason = status_codes.RESPONSES.get(status, "Error")
    text = _BALANCER_TEXT.get(status, reason + ".")
    body = f"<html><body><h1>{status} {reason}</h1>\n{text}\n</body></html>\n".encode()
    return _response(flow, status, body, {"Content-Type": "text/html", "Cache-Control": "no-cache"})


def _response(flow: http.HTTPFlow, status: int, body: bytes, headers: dict[str, str]) -> http.Response:
    head = flow.request.method.upper() == "HEAD"
    response = http.Response.make(status, b"" if head else body, headers)
    if head:
        response.headers["Content-Length"] = str(len(body))
    return response
