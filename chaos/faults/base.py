"""The fault framework: what a fault kind is, how a fault spec is parsed, matched
and triggered, and how active faults act on a flow.

A kind (refuse.py, latency.py, ...) is a small class with a `name`, a `Params`
dataclass whose field names carry their units (`delay_ms`), and the hooks it
needs (FaultKind). Everything that decides *whether* a fault acts on a request
lives here and in triggers.py, once, never in a kind: the match (host, role,
endpoint, method, repository, client), the trigger (probability with a seed,
first/every/after N, time window, flapping) and the expiry.

Several faults at once: for each request the matching faults are taken in
insertion order (the order they were added; PUT keeps a fault's place) and
every one of them makes its trigger decision, whatever the others do, so a
fault's counters and random draws do not depend on its neighbours. The faults
that fire then act in that same order, phase by phase:

  1. on_connect / on_request (sync): the first that kills or answers the flow
     ends the phase; later ones do not act on it.
  2. hold_request (async, e.g. latency, blackhole): awaited one after the other,
     so two latencies add up.
  3. on_response_headers (sync): stops once one kills the flow.
  4. body_filter: filters are chained in order (the first sees the upstream's
     bytes, the last feeds the client), and their end-of-body actions run in
     order when the upstream's body is complete.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import functools
import ipaddress
import math
import re
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from chaos.errors import UsageError
from chaos.faults.registry import kinds
from chaos.faults.triggers import Trigger, TriggerError, TriggerState, parse_trigger
from chaos.proxy.classify import ENDPOINT_SELECTORS, ROLES, Endpoint

DEFAULT_TTL_S = 300.0
"""A fault nobody removes still ends: a crashed runner cannot leave Hub 'down' for ever."""

APPLIED = "hub_chaos.faults"
"""flow.metadata key: names of the faults that acted on the flow, in order."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_METHOD = re.compile(r"^[A-Z]+$")
# Globs over repository and host names: their characters plus * and ?; no [sets],
# whose typos (an unclosed "[") fnmatch would silently take literally.
_REPOSITORY_GLOB = re.compile(r"^[a-z0-9._/*?-]+$")
_HOST_GLOB = re.compile(r"^[a-z0-9.*?-]+$")
_CLIENT_GLOB = re.compile(r"^[0-9a-f.:*?]+$")


class FaultSpecError(UsageError):
    """A fault spec is invalid; `field` names the offending item ("match.methods")."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name


class ParamError(ValueError):
    """Raised by a Params.__post_init__ for a bad value; becomes FaultSpecError("params.<field>")."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


class DuplicateFault(UsageError):
    """A fault with this name is already active."""


class UnknownFault(UsageError):
    """No active fault has this name."""


@dataclass(frozen=True)
class NoParams:
    """For kinds that take no parameters."""


class FaultKind:
    """Base of every fault kind. A kind defines only the hooks it needs.

    Sync hooks run inside mitmproxy's hooks: never sleep or block in them. They
    return True when they acted on the flow.
    - on_connect(flow): an HTTP CONNECT (regular proxy mode) for a matched host.
      Only kinds that define it see (and count) CONNECTs.
    - on_request(flow): request headers are in, nothing was sent upstream yet.
    - on_response_headers(flow): upstream answered; nothing sent to the client yet.
    - body_filter(flow): at response headers, return a BodyFilter to transform
      the streamed body (and possibly end the response its own way), or None.
    Optional async ability (None when a kind does not have it):
    - hold_request(flow, lifetime) -> bool: awaited after on_request, before the
      request goes upstream; other flows carry on meanwhile. `lifetime` tells
      when the fault is removed or expires.
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    hold_request: ClassVar[Callable[..., typing.Awaitable[bool]] | None] = None

    def __init__(self, params: Any):
        self.params = params

    def on_connect(self, flow: Any) -> bool:
        return False

    def on_request(self, flow: Any) -> bool:
        return False

    def on_response_headers(self, flow: Any) -> bool:
        return False

    def body_filter(self, flow: Any) -> BodyFilter | None:
        return None

    @property
    def acts_on_connect(self) -> bool:
        return type(self).on_connect is not FaultKind.on_connect


class BodyFilter:
    """Transforms a streamed response body, chunk by chunk.

    __call__ runs synchronously for every chunk (and once with b"" at the end of
    the body): it must never block or sleep. When `ends_response` is True,
    finish() is awaited once the upstream's body is complete and before
    mitmproxy completes the response, so it may hold or kill the flow. close()
    always runs when the flow is over, however it ended.
    """

    ends_response: ClassVar[bool] = False

    def __call__(self, chunk: bytes) -> bytes:
        return chunk

    async def finish(self, flow: Any, lifetime: Lifetime) -> None:
        return None

    def close(self) -> None:
        return None


class CutAfter(BodyFilter):
    """Let the first `after_bytes` of the body through and drop the rest."""

    def __init__(self, after_bytes: int):
        self.remaining = after_bytes

    def __call__(self, chunk: bytes) -> bytes:
        if self.remaining >= len(chunk):
            self.remaining -= len(chunk)
            return chunk
        kept = chunk[: self.remaining]
        self.remaining = 0
        return kept


def has_body(flow: Any) -> bool:
    """Whether the response carries body bytes a body filter could act on."""
    response = flow.response
    if flow.request.method == "HEAD" or response.status_code in (204, 304) or response.status_code < 200:
        return False
    return response.headers.get("content-length", "").strip() != "0"


def content_length(flow: Any) -> int | None:
    """The response's Content-Length, or None when absent or malformed."""
    text = flow.response.headers.get("content-length", "").strip()
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class Match:
    """Which requests a fault applies to; an empty criterion matches everything.

    A CONNECT carries only a host, so a fault narrowed by endpoint, method or
    repository never matches one: it leaves tunnels up and acts per request.
    `endpoints` takes the kinds from chaos.proxy.classify.KINDS plus
    manifest_tag and manifest_digest ("manifest" matches both). `clients` takes
    client IP addresses, globs ("127.0.0.*") or CIDRs ("127.0.0.0/30").
    """

    roles: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # host names or globs ("*.docker.io")
    endpoints: tuple[str, ...] = ()  # chaos.proxy.classify.ENDPOINT_SELECTORS
    methods: tuple[str, ...] = ()
    repository: str | None = None  # glob: "library/*"
    clients: tuple[str, ...] = ()

    def matches(self, host: str, method: str, endpoint: Endpoint, client: str | None = None) -> bool:
        host = host.lower().rstrip(".")
        if self.roles and endpoint.role not in self.roles:
            return False
        if self.hosts and not any(fnmatch.fnmatchcase(host, h) for h in self.hosts):
            return False
        if self.endpoints and not endpoint.selected_by(self.endpoints):
            return False
        if self.methods and method.upper() not in self.methods:
            return False
        if self.repository is not None and not (
            endpoint.repository is not None
            and fnmatch.fnmatchcase(endpoint.repository, self.repository)
        ):
            return False
        if self.clients and not (client is not None and any(_client_matches(p, client) for p in self.clients)):
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


@dataclass(frozen=True)
class Counters:
    matched: int = 0  # requests that matched (CONNECTs only for kinds acting on them)
    fired: int = 0  # of those, how many the trigger picked
    applied: int = 0  # of those, how many the kind actually acted on

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FaultSpec:
    name: str
    kind: str
    params: Any  # an instance of the kind's Params dataclass
    match: Match = field(default_factory=Match)
    expires_at: float = 0.0  # unix time
    trigger: Trigger = field(default_factory=Trigger)
    # Read-only snapshot, set by FaultSet.specs(); never part of equality or input.
    counters: Counters | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "kind": self.kind,
            "params": dataclasses.asdict(self.params),
            "match": self.match.to_dict(),
            "trigger": self.trigger.to_dict(),
            "expires_at": self.expires_at,
        }
        if self.counters is not None:
            out["counters"] = self.counters.to_dict()
        return out


_SPEC_FIELDS = ("name", "kind", "params", "match", "trigger", "ttl_s", "expires_at", "counters")
_MATCH_FIELDS = ("roles", "hosts", "endpoints", "methods", "repository", "clients")


def parse_fault_spec(data: Any, *, now: float | None = None) -> FaultSpec:
    """Validate a plain dict (from JSON or YAML) into a FaultSpec.

    Keys: name, kind, params (the kind's), match, trigger (triggers.py), and
    either ttl_s (seconds from now, default 300) or expires_at (unix time, as
    GET /faults returns it). `counters`, as GET /faults shows them, is accepted
    and ignored so a listed fault can be sent back as it is.
    Raises FaultSpecError naming the offending field.
    """
    now = time.time() if now is None else now
    if not isinstance(data, Mapping):
        raise FaultSpecError("fault", f"expected a mapping, got {_type_name(data)}")
    _reject_unknown(data, _SPEC_FIELDS, "")

    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise FaultSpecError(
            "name",
            f"expected lowercase letters, digits, '.', '_' or '-' (at most 63), got {name!r}",
        )
    kind_name = data.get("kind")
    known = kinds()
    if kind_name not in known:
        raise FaultSpecError(
            "kind", f"unknown fault kind {kind_name!r} (expected one of: {', '.join(sorted(known))})"
        )
    kind_class = known[kind_name]
    params = _parse_params(kind_class, data.get("params"))
    match = _parse_match(data.get("match"))
    try:
        trigger = parse_trigger(data.get("trigger"))
    except TriggerError as err:
        raise FaultSpecError(err.field, err.problem) from None
    expires_at = _parse_expiry(data, now)
    if trigger.start_after_s and now + trigger.start_after_s >= expires_at:
        raise FaultSpecError(
            "trigger.start_after_s",
            f"{trigger.start_after_s:g} s is after the fault expires ({expires_at - now:g} s from now)",
        )
    return FaultSpec(name, kind_name, params, match, expires_at, trigger)


def _parse_expiry(data: Mapping[str, Any], now: float) -> float:
    if "ttl_s" in data and "expires_at" in data:
        raise FaultSpecError("ttl_s", "give either ttl_s or expires_at, not both")
    if "expires_at" in data:
        expires_at = _number(data["expires_at"], "expires_at")
        if expires_at <= now:
            raise FaultSpecError("expires_at", f"{expires_at} is in the past")
        return expires_at
    ttl = _number(data.get("ttl_s", DEFAULT_TTL_S), "ttl_s")
    if ttl <= 0:
        raise FaultSpecError("ttl_s", f"must be positive, got {ttl}")
    return now + ttl


def _parse_params(kind_class: type, raw: Any) -> Any:
    params_class = kind_class.Params
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise FaultSpecError("params", f"expected a mapping, got {_type_name(raw)}")
    fields = {f.name: f for f in dataclasses.fields(params_class)}
    for key in raw:
        if key not in fields:
            expected = ", ".join(fields) or "none"
            raise FaultSpecError(
                f"params.{key}",
                f"unknown parameter for kind {kind_class.name!r} (expected: {expected})",
            )
    hints = typing.get_type_hints(params_class)
    values = {}
    for key, f in fields.items():
        if key in raw:
            values[key] = _typed_value(raw[key], hints[key], f"params.{key}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FaultSpecError(f"params.{key}", f"required by kind {kind_class.name!r}")
    try:
        return params_class(**values)
    except ParamError as err:
        raise FaultSpecError(f"params.{err.field}", err.problem) from None
    except ValueError as err:  # a Params.__post_init__ may check relations between fields
        raise FaultSpecError("params", str(err)) from None


def _typed_value(value: Any, hint: Any, where: str) -> Any:
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise FaultSpecError(where, "must not be null")
    for wanted in allowed:
        if wanted is bool and isinstance(value, bool):
            return value
        if wanted in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if wanted is int and not (isinstance(value, int) or float(value).is_integer()):
                continue
            if not math.isfinite(value):
                raise FaultSpecError(where, f"must be finite, got {value!r}")
            if value < 0:
                raise FaultSpecError(where, f"must not be negative, got {value}")
            return wanted(value)
        if wanted is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(a, "__name__", str(a)) for a in allowed)
    raise FaultSpecError(where, f"expected {names}, got {_type_name(value)} {value!r}")


def _parse_match(raw: Any) -> Match:
    if raw is None:
        return Match()
    if not isinstance(raw, Mapping):
        raise FaultSpecError("match", f"expected a mapping, got {_type_name(raw)}")
    _reject_unknown(raw, _MATCH_FIELDS, "match.")
    roles = _string_list(raw.get("roles"), "match.roles")
    for role in roles:
        if role not in ROLES:
            raise FaultSpecError("match.roles", f"unknown role {role!r} (expected one of: {', '.join(ROLES)})")
    endpoints = _string_list(raw.get("endpoints"), "match.endpoints")
    for kind in endpoints:
        if kind not in ENDPOINT_SELECTORS:
            raise FaultSpecError(
                "match.endpoints",
                f"unknown endpoint {kind!r} (expected one of: {', '.join(ENDPOINT_SELECTORS)})",
            )
    methods = tuple(m.upper() for m in _string_list(raw.get("methods"), "match.methods"))
    for method in methods:
        if not _METHOD.match(method):
            raise FaultSpecError("match.methods", f"not an HTTP method: {method!r}")
    hosts = tuple(h.lower() for h in _string_list(raw.get("hosts"), "match.hosts"))
    for host in hosts:
        if not _HOST_GLOB.match(host):
            raise FaultSpecError("match.hosts", f"bad host glob {host!r} (letters, digits, '.', '-', '*', '?')")
    repository = raw.get("repository")
    if repository is not None and (
        not isinstance(repository, str) or not _REPOSITORY_GLOB.match(repository)
    ):
        raise FaultSpecError(
            "match.repository",
            f"bad glob {repository!r} (lowercase name characters, '/', '*', '?')",
        )
    clients = tuple(c.lower() for c in _string_list(raw.get("clients"), "match.clients"))
    for client in clients:
        _check_client_pattern(client)
    return Match(roles, hosts, endpoints, methods, repository, clients)


def _check_client_pattern(pattern: str) -> None:
    """Reject client patterns that could never match an IP address."""
    where = "match.clients"
    if "/" in pattern:
        try:
            ipaddress.ip_network(pattern, strict=False)
        except ValueError as err:
            raise FaultSpecError(where, f"bad CIDR {pattern!r}: {err}") from None
        return
    if not any(c in pattern for c in "*?"):
        try:
            ipaddress.ip_address(pattern)
        except ValueError:
            raise FaultSpecError(where, f"{pattern!r} is not an IP address, glob or CIDR") from None
        return
    if not _CLIENT_GLOB.match(pattern):
        raise FaultSpecError(where, f"bad address glob {pattern!r} (digits, '.', ':', hex, '*', '?')")
    if ":" not in pattern:  # an IPv4 glob: its literal parts must be octets
        parts = pattern.split(".")
        literal = [p for p in parts if not any(c in p for c in "*?")]
        if len(parts) > 4 or any(not p.isdigit() or int(p) > 255 for p in literal):
            raise FaultSpecError(where, f"address glob {pattern!r} can never match an IPv4 address")


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FaultSpecError(where, f"expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultSpecError(where, f"expected a number, got {_type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise FaultSpecError(where, f"must be finite, got {value!r}")
    return float(value)


def _reject_unknown(data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise FaultSpecError(f"{prefix}{key}", f"unknown field (expected: {', '.join(allowed)})")


def _type_name(value: Any) -> str:
    return type(value).__name__


class Lifetime:
    """When an active fault ends: removed, replaced, reset, or expired."""

    def __init__(self, expires_at: float, clock: Callable[[], float]):
        self.expires_at = expires_at
        self._clock = clock
        self._removed = asyncio.Event()  # binds to the running loop on first wait

    def end(self) -> None:
        self._removed.set()

    @property
    def ended(self) -> bool:
        return self._removed.is_set() or self._clock() >= self.expires_at

    async def wait(
        self, timeout_s: float | None = None, abandoned: Callable[[], bool] | None = None
    ) -> bool:
        """Wait until the fault ends or `timeout_s` passes; True when the fault ended.

        `abandoned`, when given, is polled about once a second: when it says True
        (say, the client went away) the wait stops early and returns False.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.ended:
            step = self.expires_at - self._clock()
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    return False
            if abandoned is not None:
                step = min(step, 1.0)
            try:
                await asyncio.wait_for(self._removed.wait(), max(step, 0.0))
            except TimeoutError:
                if abandoned is not None and abandoned():
                    return False
        return True


class ActiveFault:
    """One added fault: its spec, its kind instance, trigger state and lifetime."""

    def __init__(self, spec: FaultSpec, clock: Callable[[], float]):
        self.spec = spec
        self.kind: FaultKind = kinds()[spec.kind](spec.params)  # holds any per-fault state a kind keeps
        self.trigger = TriggerState(spec.trigger, clock())
        self.lifetime = Lifetime(spec.expires_at, clock)
        self.applied = 0

    @property
    def counters(self) -> Counters:
        return Counters(self.trigger.matched, self.trigger.fired, self.applied)


class FaultSet:
    """Active faults in insertion order; expired ones vanish the next time anyone looks."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._faults: dict[str, ActiveFault] = {}

    def add(self, spec: FaultSpec) -> None:
        self._prune()
        if spec.name in self._faults:
            raise DuplicateFault(f"fault {spec.name!r} already exists")
        self._faults[spec.name] = ActiveFault(spec, self._clock)

    def replace(self, spec: FaultSpec) -> None:
        """Swap the fault of the same name, keeping its place in the order.

        The new fault starts afresh: counters at zero, its time window from now.
        """
        self._prune()
        old = self._faults.get(spec.name)
        if old is None:
            raise UnknownFault(f"no fault named {spec.name!r}")
        self._faults[spec.name] = ActiveFault(spec, self._clock)
        old.lifetime.end()

    def remove(self, name: str) -> None:
        self._prune()
        removed = self._faults.pop(name, None)
        if removed is None:
            raise UnknownFault(f"no fault named {name!r}")
        removed.lifetime.end()

    def clear(self) -> None:
        for active in self._faults.values():
            active.lifetime.end()
        self._faults.clear()

    def specs(self) -> list[FaultSpec]:
        """Active specs in order, each with a snapshot of its counters."""
        self._prune()
        return [dataclasses.replace(a.spec, counters=a.counters) for a in self._faults.values()]

    def matching(
        self, host: str, method: str, endpoint: Endpoint, client: str | None = None
    ) -> list[ActiveFault]:
        """Faults whose match criteria take this request (no trigger decision, no counting)."""
        self._prune()
        return [
            a for a in self._faults.values() if a.spec.match.matches(host, method, endpoint, client)
        ]

    def fire(
        self,
        host: str,
        method: str,
        endpoint: Endpoint,
        client: str | None = None,
        *,
        connect: bool = False,
    ) -> list[ActiveFault]:
        """The faults that act on this request, in order, after each matching
        fault's trigger decided (and counted). `connect`: the request is a
        CONNECT, which only kinds with on_connect see."""
        if not self._faults:
            return []
        now = self._clock()
        self._prune(now)
        fired = []
        for active in self._faults.values():
            if connect and not active.kind.acts_on_connect:
                continue
            if active.spec.match.matches(host, method, endpoint, client) and active.trigger.decide(now):
                fired.append(active)
        return fired

    def _prune(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        for name in [n for n, a in self._faults.items() if a.spec.expires_at <= now]:
            self._faults.pop(name).lifetime.end()


def note_applied(active: ActiveFault, flow: Any) -> None:
    """Record that `active` acted on `flow` (once per flow, whatever the phase)."""
    names = flow.metadata.setdefault(APPLIED, [])
    if active.spec.name not in names:
        names.append(active.spec.name)
        active.applied += 1


def run_hook(faults: list[ActiveFault], hook: str, flow: Any) -> list[str]:
    """Call `hook` ("on_connect", "on_request", "on_response_headers") on each fault in
    order; return the names of those that acted. Stops once the flow is killed or,
    before the response phase, answered: later faults have nothing left to act on."""
    applied = []
    for active in faults:
        if getattr(active.kind, hook)(flow):
            applied.append(active.spec.name)
            note_applied(active, flow)
        if flow.error is not None or (hook != "on_response_headers" and flow.response is not None):
            break
    return applied


def needs_hold(faults: list[ActiveFault]) -> bool:
    return any(active.kind.hold_request is not None for active in faults)


async def hold_request(faults: list[ActiveFault], flow: Any) -> None:
    """Await each fault's hold_request in order, until one kills or answers the flow."""
    for active in faults:
        if active.kind.hold_request is None:
            continue
        if await active.kind.hold_request(flow, active.lifetime):
            note_applied(active, flow)
        if flow.error is not None or flow.response is not None or not flow.live:
            return


class FilterChain:
    """The response.stream callable when body filters apply: each filter in
    fault order, then `sink` (the addon's byte counter) sees what the client gets."""

    def __init__(self, filters: list[tuple[ActiveFault, BodyFilter]], sink: Callable[[bytes], bytes]):
        self.filters = filters
        self._steps = [f for _, f in filters]
        self._sink = sink

    def __call__(self, chunk: bytes) -> bytes:
        for step in self._steps:
            chunk = step(chunk)
        return self._sink(chunk)

    @property
    def ends_response(self) -> bool:
        return any(f.ends_response for f in self._steps)

    async def finish(self, flow: Any) -> None:
        """Run the filters' end-of-body actions in order, stopping once the flow is killed."""
        for active, step in self.filters:
            if step.ends_response and flow.error is None:
                await step.finish(flow, active.lifetime)

    def close(self) -> None:
        for step in self._steps:
            step.close()


def body_filters(faults: list[ActiveFault], flow: Any) -> list[tuple[ActiveFault, BodyFilter]]:
    """Ask each fault, in order, for a body filter for this response."""
    filters = []
    for active in faults:
        step = active.kind.body_filter(flow)
        if step is not None:
            filters.append((active, step))
            note_applied(active, flow)
    return filters
