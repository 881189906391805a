"""HTTP plumbing of the builtin puller: requests to one registry endpoint with
Docker's challenge and token dance, bounded bodies, and every failure turned
into a RegistryFailure carrying the code and the Go-like wording a Docker user
would see (`Get "https://registry-1.docker.io/v2/": dial tcp ...`).

Modelled on the Docker 20.10 daemon's registry client (distribution's
registry/client and registry/client/auth): ping /v2/ to learn the challenge,
fetch a bearer token per scope before repository requests, and read the
OAuth `error=` parameter of a 401 (`insufficient_scope` means DENIED).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3.exceptions

from chaos.vocab.codes import BAD_RESPONSE, NETWORK, TIMEOUT
from chaos.errors import ChaosError
from chaos.vocab.codes import DENIED, MESSAGES, TOOMANYREQUESTS, UNAUTHORIZED, errcode_text

MAX_REDIRECTS = 5
MAX_SMALL_BODY_BYTES = 1 << 20  # error bodies and token answers
CHUNK_BYTES = 64 * 1024
# Docker never trusts a token for less than a minute, whatever expires_in says.
MIN_TOKEN_LIFETIME_S = 60.0


class RegistryFailure(ChaosError):
    """One failed step of a pull. Never escapes BuiltinClient.pull: it becomes an
    Attempt and, for the last endpoint, the PullResult's error."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        raw: str | None = None,
        registry_error: bool = False,
        registry_message: str | None = None,
        insufficient_scope: bool = False,
        retriable: bool = False,
    ):
        super().__init__(message)
        self.code = code
        self.status = status
        self.raw = raw if raw is not None else message
        # True when the code came from a registry API error answer (not from the
        # token server, the network or our own checks): only those get Docker's
        # "pull access denied" / "manifest ... not found" translation.
        self.registry_error = registry_error
        self.registry_message = registry_message
        self.insufficient_scope = insufficient_scope
        self.retriable = retriable


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"[\s,]*({_TOKEN})")
_PARAM_RE = re.compile(rf"[\s,]*({_TOKEN})\s*=\s*")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_BARE_RE = re.compile(r"[^\s,]*")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value (several challenges may be comma-joined)."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME_RE.match(header, pos)
        if not scheme:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while True:
            param = _PARAM_RE.match(header, pos)
            if not param:
                break
            pos = param.end()
            quoted = _QUOTED_RE.match(header, pos)
            if quoted:
                value = re.sub(r"\\(.)", r"\1", quoted.group(1))
                pos = quoted.end()
            else:
                bare = _BARE_RE.match(header, pos)
                value = bare.group(0)
                pos = bare.end()
            params[param.group(1).lower()] = value
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, port


# --------------------------------------------------------------------------- errors


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """Every exception wrapped inside `exc` (requests -> urllib3 -> socket),
    outermost first."""
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    chain = []
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        nested = [getattr(current, "reason", None), current.__cause__, current.__context__]
        nested.extend(current.args)
        queue.extend(item for item in nested if isinstance(item, BaseException))
    return chain


def _is_timeout(chain: list[BaseException]) -> bool:
    for item in chain:
        # urllib3 2's NewConnectionError subclasses ConnectTimeoutError for
        # compatibility; a refused connection is not a timeout.
        if isinstance(item, urllib3.exceptions.NewConnectionError):
            continue
        if isinstance(
            item,
            (
                requests.Timeout,
                urllib3.exceptions.ReadTimeoutError,
                urllib3.exceptions.ConnectTimeoutError,
                socket.timeout,
                TimeoutError,
            ),
        ):
            return True
    return False


def network_failure(
    exc: requests.RequestException, url: str, *, proxy_url: str | None, mid_body: bool = False
) -> RegistryFailure:
    """Turn a requests exception into NETWORK or TIMEOUT with Go's wording, so
    messages read like the daemon's: `Get "<url>": <reason>`."""
    chain = _exception_chain(exc)
    host = _origin(url)[1]
    # Through a proxy, every TCP connection this request made went to the proxy.
    peer = _origin(proxy_url or url)
    address = f"{peer[1]}:{peer[2]}"
    prefix = "proxyconnect tcp: " if proxy_url else ""

    def find(kind):
        return next((item for item in chain if isinstance(item, kind)), None)

    tunnel_refused = next(
        (m for item in chain if (m := _TUNNEL_FAILED.search(str(item)))), None
    )
    code = NETWORK
    if find(ConnectionRefusedError):
        reason = f"{prefix}dial tcp {address}: connect: connection refused"
    elif tunnel_refused:
        # The proxy answered CONNECT with an error; Go reports its status text.
        reason = tunnel_refused.group(1)
    elif find(http.client.RemoteDisconnected) or find(ssl.SSLEOFError) or find(ssl.SSLZeroReturnError):
        # Closed before any answer (RemoteDisconnected subclasses ConnectionResetError).
        reason = "unexpected EOF" if mid_body else "EOF"
    elif find(ConnectionResetError):
        reason = f"read tcp {address}: read: connection reset by peer"
    elif find(socket.gaierror):
        reason = f"dial tcp: lookup {host}: no such host"
    elif (bad_cert := find(ssl.SSLCertVerificationError)) is not None:
        if "hostname" in str(bad_cert).lower():
            reason = f"x509: certificate is not valid for {host}"
        else:
            reason = "x509: certificate signed by unknown authority"
    elif _is_timeout(chain):
        code = TIMEOUT
        if mid_body:
            reason = "net/http: request canceled (Client.Timeout or context cancellation while reading body)"
        elif find(requests.ConnectTimeout):
            reason = f"{prefix}dial tcp {address}: i/o timeout"
        else:
            reason = "net/http: timeout awaiting response headers"
    elif (tls := find(ssl.SSLError)) is not None:
        reason = f"remote error: tls: {(tls.reason or str(tls)).lower().replace('_', ' ')}"
    elif mid_body or find(urllib3.exceptions.ProtocolError) or find(ConnectionError):
        reason = "unexpected EOF" if mid_body else "EOF"
    else:
        reason = _first_line(chain[-1])
    return RegistryFailure(
        code, f'Get "{url}": {reason}', raw=f"{type(exc).__name__}: {exc}", retriable=True
    )


_TUNNEL_FAILED = re.compile(r"Tunnel connection failed: \d{3} ([^'\")]+)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _errors_from_body(body: bytes) -> list[tuple[str, str]]:
    """The (code, message) pairs of a registry JSON error body, [] if it has none."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return []
    pairs = []
    for item in errors:
        if isinstance(item, dict) and isinstance(item.get("code"), str) and item["code"]:
            code = item["code"].upper()
            message = item.get("message")
            if not isinstance(message, str) or not message:
                message = MESSAGES.get(code, code.lower())
            pairs.append((code, message))
    return pairs


def failure_from_response(
    response: requests.Response, body: bytes, *, not_found_code: str | None
) -> RegistryFailure:
    """A non-2xx registry answer -> its registry error code, or BAD_RESPONSE
    when it is not registry protocol.

    As in Docker and containers/image (distribution's HandleErrorResponse), a
    bearer challenge's error comes first (insufficient_scope -> DENIED,
    invalid_token -> UNAUTHORIZED), then the body's first error: Hub answers a
    logged-out private pull with 401, insufficient_scope and an UNAUTHORIZED
    body, and docker and skopeo both report DENIED. Bodies are read for 4xx
    only: for any other status they say "received unexpected HTTP status: 503
    Service Unavailable" whatever the body's error code (BAD_RESPONSE here)."""
    status = response.status_code
    raw = f"HTTP {status} from {response.url}: {body[:500].decode('utf-8', 'replace')}"
    retriable = status >= 500
    scope_error = None
    description = None
    if status in (401, 403):
        for challenge in parse_challenges(response.headers.get("WWW-Authenticate", "")):
            if challenge.scheme == "bearer" and challenge.params.get("error"):
                scope_error = challenge.params["error"]
                description = challenge.params.get("error_description")
                break
    errors = _errors_from_body(body) if 400 <= status < 500 else []
    if scope_error == "insufficient_scope":
        code, message = DENIED, description or MESSAGES[DENIED]
    elif scope_error == "invalid_token":
        code, message = UNAUTHORIZED, description or MESSAGES[UNAUTHORIZED]
    elif errors:
        code, message = errors[0]
    elif status == 401:
        code, message = UNAUTHORIZED, description or MESSAGES[UNAUTHORIZED]
    elif status == 404 and not_found_code:
        code, message = not_found_code, MESSAGES.get(not_found_code, "not found")
    elif status == 429:
        code, message = TOOMANYREQUESTS, MESSAGES[TOOMANYREQUESTS]
    else:
        reason = f"{status} {response.reason}".strip()
        return RegistryFailure(
            BAD_RESPONSE,
            f"received unexpected HTTP status: {reason}",
            status=status,
            raw=raw,
            retriable=retriable,
        )
    return RegistryFailure(
        code,
        errcode_text(code, message),
        status=status,
        raw=raw,
        registry_error=True,
        registry_message=message,
        insufficient_scope=scope_error == "insufficient_scope",
        retriable=retriable,
    )


# --------------------------------------------------------------------------- transport


class EndpointClient:
    """GET requests to one registry endpoint (the mirror or Docker Hub) within one
    pull: the challenge learnt from the /v2/ ping, bearer tokens cached per scope,
    redirects followed without carrying Authorization to another origin."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        proxy_url: str | None,
        verify: bool | str,
        credentials: tuple[str, str] | None,
        timeout: float,
    ):
        self.base_url = base_url.rstrip("/")
        self.proxy_url = proxy_url
        self._session = session
        # An explicit empty dict means "direct"; with trust_env off nothing else
        # can add a proxy.
        self._proxies = {"http": proxy_url, "https": proxy_url} if proxy_url else {}
        self._verify = verify
        self._credentials = credentials
        self._timeout = (timeout, timeout)
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    def ping(self) -> None:
        """GET /v2/ like the daemon does before anything else: any HTTP answer is
        fine (a 401 teaches the challenge); only transport failures fail."""
        url = f"{self.base_url}/v2/"
        response = self._send(url, None, None)
        try:
            if response.status_code == 401:
                self._challenge = _usable_challenge(response) or self._challenge
            read_bounded(response, MAX_SMALL_BODY_BYTES, proxy_url=self.proxy_url)
        except RegistryFailure:
            pass  # a broken ping body does not matter; the daemon ignores it too
        finally:
            response.close()

    def get(
        self,
        path: str,
        *,
        scope: str,
        accept: str | None = None,
        not_found_code: str | None = None,
    ) -> requests.Response:
        """A 2xx streaming response for `path`, or RegistryFailure. The caller
        closes the response."""
        url = f"{self.base_url}{path}"
        authorization = self._authorization(scope, url)
        response = self._send(url, authorization, accept)
        if response.status_code == 401 and authorization is None:
            challenge = _usable_challenge(response)
            if challenge is not None:
                self._challenge = challenge
                authorization = self._authorization(scope, url)
                if authorization is not None:
                    response.close()
                    response = self._send(url, authorization, accept)
        if 200 <= response.status_code < 300:
            return response
        try:
            body = read_bounded(response, MAX_SMALL_BODY_BYTES, proxy_url=self.proxy_url)
        except RegistryFailure:
            body = b""
        finally:
            response.close()
        raise failure_from_response(response, body, not_found_code=not_found_code)

    # -- authorization

    def _authorization(self, scope: str, url: str) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return _basic(self._credentials) if self._credentials else None
        if challenge.scheme == "bearer":
            return f"Bearer {self._token(challenge, scope, url)}"
        return None

    def _token(self, challenge: Challenge, scope: str, url: str) -> str:
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        key = (realm, service, scope)
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        if not realm.startswith(("http://", "https://")):
            raise RegistryFailure(
                BAD_RESPONSE, f'Get "{url}": bearer challenge without a usable realm: {realm!r}'
            )
        query = {}
        if service:
            query["service"] = service
        query["scope"] = scope
        if self._credentials:
            query["account"] = self._credentials[0]
        token_url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        basic = _basic(self._credentials) if self._credentials else None
        try:
            response = self._send(token_url, basic, "application/json")
        except RegistryFailure as failure:
            # Docker fetches tokens inside the registry request's transport, so
            # the error nests: Get "<registry url>": Get "<token url>": <reason>.
            raise _under(url, failure) from failure
        try:
            body = read_bounded(response, MAX_SMALL_BODY_BYTES, proxy_url=self.proxy_url)
        finally:
            response.close()
        if response.status_code != 200:
            raise _token_failure(response, body, url)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        token = None
        if isinstance(answer, dict):
            token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryFailure(
                BAD_RESPONSE,
                f'Get "{url}": authorization server did not include a token in the response',
                status=response.status_code,
                raw=body[:500].decode("utf-8", "replace"),
            )
        lifetime = answer.get("expires_in")
        if not isinstance(lifetime, (int, float)) or lifetime < MIN_TOKEN_LIFETIME_S:
            lifetime = MIN_TOKEN_LIFETIME_S
        self._tokens[key] = (token, time.monotonic() + lifetime)
        return token

    # -- transport

    def _send(self, url: str, authorization: str | None, accept: str | None) -> requests.Response:
        """GET with redirects followed by hand, so that Authorization never
        reaches another origin (Hub's blob redirects go to a CDN host)."""
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = {}
            if accept:
                headers["Accept"] = accept
            if authorization and _origin(url) == origin:
                headers["Authorization"] = authorization
            try:
                response = self._session.get(
                    url,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=self._timeout,
                    proxies=self._proxies,
                    verify=self._verify,
                )
            except requests.RequestException as exc:
                raise network_failure(exc, url, proxy_url=self.proxy_url) from exc
            location = response.headers.get("Location")
            if response.status_code in (301, 302, 303, 307, 308) and location:
                response.close()
                url = urljoin(url, location)
                continue
            return response
        raise RegistryFailure(BAD_RESPONSE, f'Get "{url}": stopped after {MAX_REDIRECTS} redirects')


def read_bounded(response: requests.Response, limit: int, *, proxy_url: str | None) -> bytes:
    """The whole body, refusing more than `limit` bytes (a registry answering an
    endless body must not exhaust memory)."""
    chunks = []
    total = 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise RegistryFailure(
                    BAD_RESPONSE,
                    f'Get "{response.url}": response body larger than {limit} bytes',
                    status=response.status_code,
                )
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise network_failure(exc, response.url, proxy_url=proxy_url, mid_body=True) from exc
    return b"".join(chunks)


def _usable_challenge(response: requests.Response) -> Challenge | None:
    for challenge in parse_challenges(response.headers.get("WWW-Authenticate", "")):
        if challenge.scheme in ("bearer", "basic"):
            return challenge
    return None


def _basic(credentials: tuple[str, str]) -> str:
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _token_failure(response: requests.Response, body: bytes, url: str) -> RegistryFailure:
    """The token server said no. Docker reports it under the registry URL whose
    request needed the token: `Get "<url>": unauthorized: incorrect username or password`."""
    failure = failure_from_response(response, body, not_found_code=None)
    if response.status_code == 401:
        details = None
        try:
            document = json.loads(body)
            if isinstance(document, dict):
                details = document.get("details") or document.get("detail")
        except ValueError:
            pass
        if isinstance(details, str) and details and failure.registry_message in (
            None,
            MESSAGES[UNAUTHORIZED],
        ):
            failure = RegistryFailure(
                UNAUTHORIZED,
                errcode_text(UNAUTHORIZED, details),
                status=401,
                raw=failure.raw,
            )
    return _under(url, failure)


def _under(url: str, failure: RegistryFailure) -> RegistryFailure:
    """The same failure, reported under the registry request that needed a token."""
    return RegistryFailure(
        failure.code,
        f'Get "{url}": {failure.message}',
        status=failure.status,
        raw=failure.raw,
        retriable=failure.retriable,
    )
