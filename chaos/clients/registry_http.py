"""HTTP plumbing of the builtin puller: requests to one registry endpoint with
Docker's challenge and token dance, bounded bodies, and every failure turned
into a RegistryFailure carrying the code and the Go-like wording a Docker user
would see (`Get "https://registry-1.docker.io/v2/": dial tcp ...`).

Modelled on the Docker 20.10 daemon's registry client (distribution's
registry/client and registry/client/auth): ping /v2/ to learn the challenge,
fetch a bearer token per scope before repository requests, and read the
OAuth `error=` parameter of a 401 (`insufficient_scope` means DENIED).

Time limits are the daemon's own (DaemonTimings, sources in docs/engines.md):
a 30 s dial, 10 s for a TLS handshake, a minute for a proxy's CONNECT
answer, 15 s for the whole /v2/ ping and for a token request, and nothing
else: manifest and blob requests wait for their answer as long as it takes.
The only other limit is the pull's own deadline (its budget, given by the
caller), which ends any request in flight and raises PullDeadline. A
request's wait for headers is bounded by a read timeout set to what is left;
a body being read is ended by a watchdog that shuts the socket down.
"""

from __future__ import annotations

import base64
import contextvars
import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from chaos.errors import ChaosError
from chaos.vocab.codes import (
    BAD_RESPONSE,
    DENIED,
    MESSAGES,
    NETWORK,
    TIMEOUT,
    TOOMANYREQUESTS,
    UNAUTHORIZED,
    errcode_text,
)

MAX_REDIRECTS = 10  # Go's http.Client stops after 10
MAX_SMALL_BODY_BYTES = 1 << 20  # error bodies and token answers
CHUNK_BYTES = 64 * 1024
# Docker never trusts a token for less than a minute, whatever expires_in says.
MIN_TOKEN_LIFETIME_S = 60.0


@dataclass(frozen=True)
class DaemonTimings:
    """The Docker 20.10 daemon's own limits on registry traffic (moby v20.10.24;
    docs/engines.md has the source lines). Tests pass shorter retry waits."""

    dial_s: float = 30.0  # net.Dialer{Timeout: 30s} (distribution/registry.go NewV2Repository)
    tls_handshake_s: float = 10.0  # http.Transport{TLSHandshakeTimeout: 10s}
    proxy_connect_s: float = 60.0  # Go net/http: a CONNECT on a request without a deadline waits 1 minute
    ping_s: float = 15.0  # registry/auth.go PingV2Registry: http.Client{Timeout: 15s}
    token_s: float = 15.0  # distribution registry/client/auth/session.go tokenHandler.client()
    # distribution/xfer/download.go: a layer is tried again after 5, 10, 15, 20, 25 s
    # (`delay := retries * 5`, until `retries > maxDownloadAttempts` (5)): 6 attempts.
    layer_retry_s: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 25.0)
    # distribution/pull_v2.go pullSchema2Config: retry(ctx, 5, 250ms) doubling: 5 attempts.
    config_retry_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    max_concurrent_downloads: int = 3  # daemon/config DefaultMaxConcurrentDownloads

    @property
    def layer_attempts(self) -> int:
        return len(self.layer_retry_s) + 1

    @property
    def config_attempts(self) -> int:
        return len(self.config_retry_s) + 1


DOCKERD_20_10 = DaemonTimings()


class PullDeadline(ChaosError):
    """The pull's budget ran out; `doing` says what it was waiting for
    (`an answer to GET "https://..."`)."""

    def __init__(self, doing: str):
        super().__init__(f"deadline reached while waiting for {doing}")
        self.doing = doing


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
    exc: requests.RequestException, url: str, *, proxy_url: str | None, mid_body: bool = False, method: str = "GET"
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
    elif (phase := next((item for item in chain if isinstance(item, _PhaseTimeout)), None)) is not None:
        code = TIMEOUT
        reason = f"{prefix}{phase.go_reason}" if phase.go_reason.startswith("dial") else phase.go_reason
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
        code, f'{method.capitalize()} "{url}": {reason}', raw=f"{type(exc).__name__}: {exc}", retriable=True
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

# The connect-phase limits of the request being made on this thread: (dial,
# proxy CONNECT, TLS handshake) in seconds, each already cut to the time left.
_PHASE_LIMITS: contextvars.ContextVar[tuple[float, float, float]] = contextvars.ContextVar(
    "chaos_phase_limits", default=(DOCKERD_20_10.dial_s, DOCKERD_20_10.proxy_connect_s, DOCKERD_20_10.tls_handshake_s)
)


class _PhaseTimeout(urllib3.exceptions.ConnectTimeoutError):
    """A connect phase ran out of time; go_reason is Go's wording for it."""

    def __init__(self, connection, go_reason: str):
        super().__init__(connection, go_reason)
        self.go_reason = go_reason


class _DaemonLikeConnection(urllib3.connection.HTTPConnection):
    """Dial with the daemon's dial timeout (urllib3 passes the connect timeout)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        sock.settimeout(_PHASE_LIMITS.get()[0])
        return sock


class _DaemonLikeHTTPSConnection(urllib3.connection.HTTPSConnection):
    """Go's connect phases, each with its own limit: the dial (30 s), the proxy's
    answer to CONNECT (a minute), the TLS handshake (10 s). urllib3 would give
    all three the connect timeout."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _dial, tunnel, handshake = _PHASE_LIMITS.get()
        self._phase = "tunnel" if self.proxy_is_tunneling else "tls"
        sock.settimeout(tunnel if self.proxy_is_tunneling else handshake)
        return sock

    def _tunnel(self) -> None:
        super()._tunnel()
        self._phase = "tls"
        self.sock.settimeout(_PHASE_LIMITS.get()[2])

    def connect(self) -> None:
        self._phase = "dial"
        try:
            super().connect()
        except TimeoutError as exc:
            if isinstance(exc, urllib3.exceptions.ConnectTimeoutError) or self._phase == "dial":
                raise
            reason = "net/http: TLS handshake timeout" if self._phase == "tls" else "proxyconnect tcp: i/o timeout"
            raise _PhaseTimeout(self, reason) from exc


class _NoKeepAlive:
    """DisableKeepAlives: a connection serves one request and is closed, never pooled."""

    def _put_conn(self, conn) -> None:
        if conn is not None:
            conn.close()
        super()._put_conn(None)


class _DaemonLikePool(_NoKeepAlive, urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _DaemonLikeConnection


class _DaemonLikeHTTPSPool(_NoKeepAlive, urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _DaemonLikeHTTPSConnection


_POOLS = {"http": _DaemonLikePool, "https": _DaemonLikeHTTPSPool}


class _DaemonLikeAdapter(requests.adapters.HTTPAdapter):
    """requests with Go's connect phases, direct or through a proxy."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


def daemon_like_session(user_agent: str) -> requests.Session:
    """A session that behaves like the daemon's registry transport: no
    environment (HTTPS_PROXY, NO_PROXY, .netrc and REQUESTS_CA_BUNDLE of the
    caller must never decide where a chaos experiment's traffic goes), no
    transparent decompression (digests are over the bytes as stored), and
    a fresh connection per request (DisableKeepAlives: true)."""
    session = requests.Session()
    session.trust_env = False
    adapter = _DaemonLikeAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["Accept-Encoding"] = "identity"
    session.headers["User-Agent"] = user_agent
    session.headers["Connection"] = "close"
    return session


class Reply:
    """A 2xx answer being read. Its body is read through `read` or `chunks`,
    which end at the request's deadline (a watchdog shuts the socket down) and
    turn failures into RegistryFailure or PullDeadline. Close it (or use it as
    a context manager)."""

    def __init__(self, response: requests.Response, endpoint: EndpointClient, deadline: float, pull_deadline: bool, limit_s: float | None):
        self.response = response
        self.url = response.url
        self.status_code = response.status_code
        self.headers = response.headers
        self._endpoint = endpoint
        self._pull_deadline = pull_deadline
        self._limit_s = limit_s
        self.expired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()
        endpoint._flights.add(self)

    def _expire(self) -> None:
        self.expired = True
        self.abort()

    def abort(self) -> None:
        """Stop reading now (another thread may be blocked in a read)."""
        try:
            self.response.raw.shutdown()
        except (ValueError, RuntimeError, OSError, AttributeError):
            pass

    def close(self) -> None:
        self._timer.cancel()
        self._endpoint._flights.discard(self)
        self.response.close()

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            yield from self.response.iter_content(size)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError, AttributeError) as exc:
            # ValueError/AttributeError: urllib3 reading from a socket shut down under it.
            raise self._failure(exc) from exc
        if self.expired:
            raise self._failure(None)

    def read(self, limit: int) -> bytes:
        """The whole body, refusing more than `limit` bytes."""
        chunks, total = [], 0
        for chunk in self.chunks():
            total += len(chunk)
            if total > limit:
                raise RegistryFailure(
                    BAD_RESPONSE,
                    f'Get "{self.url}": response body larger than {limit} bytes',
                    status=self.status_code,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _failure(self, exc: BaseException | None) -> Exception:
        if self.expired:
            if self._pull_deadline:
                return PullDeadline(f'the body of GET "{self.url}"')
            return RegistryFailure(
                TIMEOUT,
                f'Get "{self.url}": net/http: request canceled (Client.Timeout or context cancellation while reading body)',
                raw=f"no complete body within {self._limit_s:g}s",
                retriable=True,
            )
        if isinstance(exc, requests.RequestException):
            return network_failure(exc, self.url, proxy_url=self._endpoint.proxy_url, mid_body=True)
        return RegistryFailure(
            NETWORK, f'Get "{self.url}": unexpected EOF', raw=f"{type(exc).__name__}: {exc}", retriable=True
        )


class EndpointClient:
    """GET requests to one registry endpoint (the mirror or Docker Hub) within one
    pull: the challenge learnt from the /v2/ ping, bearer tokens cached per scope,
    redirects followed without carrying Authorization to another origin, every
    request within the daemon's limits and the pull's deadline."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        proxy_url: str | None,
        verify: bool | str,
        credentials: tuple[str, str] | None,
        deadline: float,
        timings: DaemonTimings = DOCKERD_20_10,
    ):
        """deadline: time.monotonic() by which the whole pull must be done."""
        self.base_url = base_url.rstrip("/")
        self.proxy_url = proxy_url
        self.deadline = deadline
        self.timings = timings
        self._session = session
        # An explicit empty dict means "direct"; with trust_env off nothing else
        # can add a proxy.
        self._proxies = {"http": proxy_url, "https": proxy_url} if proxy_url else {}
        self._verify = verify
        self._credentials = credentials
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()  # blob downloads run in parallel: one token fetch per scope
        self._flights: set[Reply] = set()

    def abort_all(self) -> None:
        """End every body being read now (the pull gave up on this endpoint)."""
        for reply in list(self._flights):
            reply.abort()

    def ping(self) -> None:
        """GET /v2/ like the daemon does before anything else, within its 15 s:
        any HTTP answer is fine (a 401 teaches the challenge); only transport
        failures fail."""
        url = f"{self.base_url}/v2/"
        reply = self._send(url, None, None, limit_s=self.timings.ping_s)
        try:
            if reply.status_code == 401:
                self._challenge = _usable_challenge(reply.response) or self._challenge
            reply.read(MAX_SMALL_BODY_BYTES)
        except RegistryFailure:
            pass  # a broken ping body does not matter; the daemon ignores it too
        finally:
            reply.close()

    def get(
        self,
        path: str,
        *,
        scope: str,
        accept: str | None = None,
        not_found_code: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> Reply:
        """A 2xx answer for `path`, or RegistryFailure (PullDeadline when the
        pull's budget ran out). The caller closes the Reply. method: GET or
        HEAD (a HEAD's failure has no body to read its error from)."""
        url = f"{self.base_url}{path}"
        authorization = self._authorization(scope, url, method)
        reply = self._send(url, authorization, accept, headers=headers, method=method)
        if reply.status_code == 401 and authorization is None:
            challenge = _usable_challenge(reply.response)
            if challenge is not None:
                with self._lock:
                    self._challenge = challenge
                authorization = self._authorization(scope, url, method)
                if authorization is not None:
                    reply.close()
                    reply = self._send(url, authorization, accept, headers=headers, method=method)
        if 200 <= reply.status_code < 300:
            return reply
        try:
            body = reply.read(MAX_SMALL_BODY_BYTES)
        except RegistryFailure:
            body = b""
        finally:
            reply.close()
        raise failure_from_response(reply.response, body, not_found_code=not_found_code)

    # -- authorization

    def _authorization(self, scope: str, url: str, method: str = "GET") -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return _basic(self._credentials) if self._credentials else None
        if challenge.scheme == "bearer":
            with self._lock:
                return f"Bearer {self._token(challenge, scope, url, method)}"
        return None

    def _token(self, challenge: Challenge, scope: str, url: str, method: str = "GET") -> str:
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        key = (realm, service, scope)
        cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        if not realm.startswith(("http://", "https://")):
            raise RegistryFailure(
                BAD_RESPONSE, f'{method.capitalize()} "{url}": bearer challenge without a usable realm: {realm!r}'
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
            reply = self._send(token_url, basic, "application/json", limit_s=self.timings.token_s)
            try:
                body = reply.read(MAX_SMALL_BODY_BYTES)
            finally:
                reply.close()
        except RegistryFailure as failure:
            # Docker fetches tokens inside the registry request's transport, so
            # the error nests: Head "<registry url>": Get "<token url>": <reason>.
            raise _under(url, failure, method) from failure
        if reply.status_code != 200:
            raise _token_failure(reply.response, body, url, method)
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
                f'{method.capitalize()} "{url}": authorization server did not include a token in the response',
                status=reply.status_code,
                raw=body[:500].decode("utf-8", "replace"),
            )
        lifetime = answer.get("expires_in")
        if not isinstance(lifetime, (int, float)) or lifetime < MIN_TOKEN_LIFETIME_S:
            lifetime = MIN_TOKEN_LIFETIME_S
        self._tokens[key] = (token, time.monotonic() + lifetime)
        return token

    # -- transport

    def _send(
        self,
        url: str,
        authorization: str | None,
        accept: str | None,
        *,
        limit_s: float | None = None,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> Reply:
        """GET (or HEAD) with redirects followed by hand, so that Authorization never
        reaches another origin (Hub's blob redirects go to a CDN host); other
        headers (Range) follow the redirect, as in Go. limit_s: the daemon's
        limit on the whole request (ping and token: 15 s), redirects included."""
        origin = _origin(url)
        request_deadline = self.deadline if limit_s is None else min(self.deadline, time.monotonic() + limit_s)
        pull_bound = limit_s is None or request_deadline == self.deadline
        for _ in range(MAX_REDIRECTS + 1):
            left = request_deadline - time.monotonic()
            if left <= 0:
                raise self._late(url, pull_bound, limit_s, "awaiting headers", method)
            sent = dict(headers or {})
            if accept:
                sent["Accept"] = accept
            if authorization and _origin(url) == origin:
                sent["Authorization"] = authorization
            timings = self.timings
            token = _PHASE_LIMITS.set(
                (min(timings.dial_s, left), min(timings.proxy_connect_s, left), min(timings.tls_handshake_s, left))
            )
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=sent,
                    stream=True,
                    allow_redirects=False,
                    # (connect, wait for headers): Go's dial limit, and no header
                    # limit but the deadline.
                    timeout=(min(timings.dial_s, left), left),
                    proxies=self._proxies,
                    verify=self._verify,
                )
            except requests.ReadTimeout as exc:
                if time.monotonic() >= request_deadline - 0.05:
                    raise self._late(url, pull_bound, limit_s, "awaiting headers", method) from exc
                raise network_failure(exc, url, proxy_url=self.proxy_url, method=method) from exc
            except requests.RequestException as exc:
                if time.monotonic() >= self.deadline - 0.05 and _is_timeout(_exception_chain(exc)):
                    raise PullDeadline(f'a connection for {method} "{url}"') from exc
                raise network_failure(exc, url, proxy_url=self.proxy_url, method=method) from exc
            finally:
                _PHASE_LIMITS.reset(token)
            location = response.headers.get("Location")
            if response.status_code in (301, 302, 303, 307, 308) and location:
                response.close()
                url = urljoin(url, location)
                continue
            return Reply(response, self, request_deadline, pull_bound, limit_s)
        raise RegistryFailure(BAD_RESPONSE, f'Get "{url}": stopped after {MAX_REDIRECTS} redirects')

    def _late(self, url: str, pull_bound: bool, limit_s: float | None, phase: str, method: str = "GET") -> Exception:
        if pull_bound:
            return PullDeadline(f'an answer to {method} "{url}"')
        # Measured (dockerd 20.10.24, a blackholed /v2/): `Get "https://registry-1.docker.io/v2/":
        # net/http: request canceled (Client.Timeout exceeded while awaiting headers)`, after 15.0 s.
        return RegistryFailure(
            TIMEOUT,
            f'{method.capitalize()} "{url}": net/http: request canceled (Client.Timeout exceeded while {phase})',
            raw=f"no answer within {limit_s:g}s",
            retriable=True,
        )


def read_bounded(response: requests.Response, limit: int, *, proxy_url: str | None) -> bytes:
    """The whole body of a plain requests response, refusing more than `limit`
    bytes (a registry answering an endless body must not exhaust memory)."""
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


def _token_failure(response: requests.Response, body: bytes, url: str, method: str = "GET") -> RegistryFailure:
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
    return _under(url, failure, method)


def _under(url: str, failure: RegistryFailure, method: str = "GET") -> RegistryFailure:
    """The same failure, reported under the registry request that needed a token."""
    return RegistryFailure(
        failure.code,
        f'{method.capitalize()} "{url}": {failure.message}',
        status=failure.status,
        raw=failure.raw,
        retriable=failure.retriable,
    )
