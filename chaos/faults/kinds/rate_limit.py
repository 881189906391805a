"""rate-limit: Docker Hub's pull rate limit.

A pull is a manifest GET: each one spends one unit of the identity's budget of
`limit` per `window_s`; HEADs are free and never refused. Once the budget is
spent a manifest GET gets Hub's 429 TOOMANYREQUESTS without going upstream.
Every manifest GET or HEAD answer carries Hub's headers:
    ratelimit-limit: 100;w=21600
    ratelimit-remaining: 76;w=21600
    docker-ratelimit-source: 192.0.2.1      (whose budget: an IP, an origin, or the user)

Window: sliding. A pull stops counting `window_s` seconds after it was made, so
the budget comes back pull by pull, never all at once at a boundary.
A GET the upstream answers 401 is given back: it carried no valid token, so
Hub never counted it as a pull (clients that ask before they fetch a token
would otherwise pay twice). Only answers that pass through are counted; a GET
another fault answered or killed first never reached this one.

Identity (`identity`):
- auto: the `sub` of the request's Bearer token (read, not verified: it only
  names whose budget to spend) when it names a user; else the request's origin
  (mirror, client, push-registry: the proxy listener it came in on) when the
  proxy knows it; else the client address. Hub counts anonymous pulls per IP,
  one budget per machine; in the lab every component shares 127.0.0.1, so the
  origin stands for the machine;
- client: always the client address;
- user: always the token's user; anonymous pulls share one budget, "anonymous".

The budgets live on this kind instance, so replacing the fault (PUT) or
removing it starts afresh. Hooks stay O(1) amortised: each identity keeps at
most `limit` timestamps, dropped as they leave the window.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from mitmproxy import http

from chaos.errors import quoted
from chaos.faults.flowdata import ORIGIN
from chaos.faults.hub_errors import endpoint_of, error_document, json_response
from chaos.faults.kind import FaultKind
from chaos.faults.match import UNKNOWN
from chaos.faults.registry import register
from chaos.faults.spec import FaultSpecError
from chaos.vocab.codes import HUB_RATE_LIMIT_MESSAGE, TOOMANYREQUESTS
from chaos.vocab.hub import RATE_LIMIT_WINDOW_S

IDENTITIES = ("auto", "client", "user")
ANONYMOUS = "anonymous"
# Idle identities are forgotten when this many are tracked, so a fault left on
# in front of many clients cannot grow without bound.
_SWEEP_AT = 10_000
_serials = itertools.count(1)


@register
class RateLimit(FaultKind):
    name = "rate-limit"

    @dataclass(frozen=True)
    class Params:
        limit: int  # pulls (manifest GETs) per window; 0 refuses every pull
        window_s: int = RATE_LIMIT_WINDOW_S
        identity: str = "auto"  # auto | client | user

        def __post_init__(self) -> None:
            if self.window_s < 1:
                raise FaultSpecError("params.window_s", f"must be at least 1, got {self.window_s}")
            if self.identity not in IDENTITIES:
                raise FaultSpecError(
                    "params.identity",
                    f"unknown identity {quoted(self.identity)} (expected one of: {', '.join(IDENTITIES)})",
                )

    def __init__(self, params: Any, clock: Callable[[], float] = time.monotonic, **framework: Any):
        super().__init__(params, **framework)
        self.clock = clock
        self._pulls: dict[str, deque[float]] = {}
        # Per instance, so a flow in flight when the fault was replaced never
        # touches the new instance's budgets.
        self._mark = f"hub_chaos.rate_limit.{next(_serials)}"

    def remaining(self, identity: str) -> int:
        """Pulls `identity` may still make in the current window."""
        return max(self.params.limit - len(self._recent(identity)), 0)

    def on_request(self, flow: http.HTTPFlow) -> bool:
        method = flow.request.method.upper()
        if method not in ("GET", "HEAD") or endpoint_of(flow).kind != "manifest":
            return False
        identity = self._identity(flow)
        if method == "HEAD":
            flow.metadata[self._mark] = (identity, None)
            return False
        pulls = self._recent(identity)
        if len(pulls) >= self.params.limit:
            document = error_document(TOOMANYREQUESTS, HUB_RATE_LIMIT_MESSAGE)
            flow.response = json_response(flow, 429, document, self._headers(identity, 0))
            return True
        stamp = self.clock()
        pulls.append(stamp)
        flow.metadata[self._mark] = (identity, stamp)
        return False

    def on_response_headers(self, flow: http.HTTPFlow) -> bool:
        marked = flow.metadata.pop(self._mark, None)
        if marked is None:
            return False  # not a manifest GET/HEAD this fault saw, or one it refused
        identity, stamp = marked
        if stamp is not None and flow.response.status_code == 401:
            try:
                self._pulls.get(identity, deque()).remove(stamp)
            except ValueError:
                pass  # already out of the window
        flow.response.headers.update(self._headers(identity, self.remaining(identity)))
        return False  # informational headers are not a fault acting

    def _headers(self, identity: str, remaining: int) -> dict[str, str]:
        window = self.params.window_s
        return {
            "ratelimit-limit": f"{self.params.limit};w={window}",
            "ratelimit-remaining": f"{remaining};w={window}",
            "docker-ratelimit-source": identity,
        }

    def _recent(self, identity: str) -> deque[float]:
        """identity's pulls still inside the window (the deque itself, pruned)."""
        pulls = self._pulls.get(identity)
        if pulls is None:
            if len(self._pulls) >= _SWEEP_AT:
                self._sweep()
            pulls = self._pulls[identity] = deque()
        horizon = self.clock() - self.params.window_s
        while pulls and pulls[0] <= horizon:
            pulls.popleft()
        return pulls

    def _sweep(self) -> None:
        horizon = self.clock() - self.params.window_s
        for identity in [i for i, pulls in self._pulls.items() if not pulls or pulls[-1] <= horizon]:
            del self._pulls[identity]

    def _identity(self, flow: http.HTTPFlow) -> str:
        mode = self.params.identity
        if mode != "client":
            user = token_subject(flow.request.headers.get("Authorization", ""))
            if user:
                return user
            if mode == "user":
                return ANONYMOUS
            origin = flow.metadata.get(ORIGIN, UNKNOWN)
            if origin != UNKNOWN:
                return origin
        peer = flow.client_conn.peername
        return str(peer[0]) if peer else ANONYMOUS


def token_subject(authorization: str) -> str | None:
    """The `sub` claim of a Bearer JWT, unverified; None if absent, empty or unreadable."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) and subject else None
