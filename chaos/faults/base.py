"""The fault framework: what a fault kind is, how a fault spec is parsed and matched,
and the set of faults active in the proxy.

A kind (refuse.py, reset.py, ...) is a small class with a `name`, a `Params`
dataclass whose field names carry their units (`delay_ms`), and optional hooks.
Everything that decides *whether* a fault applies to a request (host, role,
endpoint kind, method, repository, expiry) lives here, once, never in a kind.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from chaos.errors import UsageError
from chaos.faults.registry import kinds
from chaos.proxy.classify import KINDS, ROLES, Endpoint

DEFAULT_TTL_S = 300.0
"""A fault nobody removes still ends: a crashed runner cannot leave Hub 'down' for ever."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_METHOD = re.compile(r"^[A-Z]+$")
# Globs over repository and host names: their characters plus * and ?; no [sets],
# whose typos (an unclosed "[") fnmatch would silently take literally.
_REPOSITORY_GLOB = re.compile(r"^[a-z0-9._/*?-]+$")
_HOST_GLOB = re.compile(r"^[a-z0-9.*?-]+$")


class FaultSpecError(UsageError):
    """A fault spec is invalid; `field` names the offending item ("match.methods")."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name


class DuplicateFault(UsageError):
    """A fault with this name is already active."""


class UnknownFault(UsageError):
    """No active fault has this name."""


@dataclass(frozen=True)
class NoParams:
    """For kinds that take no parameters."""


class FaultKind:
    """Base of every fault kind. Hooks return True when they acted on the flow.

    Hooks run synchronously inside mitmproxy's hooks: never sleep or block in them.
    - on_connect(flow): an HTTP CONNECT (regular proxy mode) for a matched host.
    - on_request(flow): request headers are in, nothing was sent upstream yet.
    - on_response_headers(flow): upstream answered; nothing sent to the client yet.
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any):
        self.params = params

    def on_connect(self, flow: Any) -> bool:
        return False

    def on_request(self, flow: Any) -> bool:
        return False

    def on_response_headers(self, flow: Any) -> bool:
        return False


@dataclass(frozen=True)
class Match:
    """Which requests a fault applies to; an empty criterion matches everything.

    A CONNECT carries only a host, so a fault narrowed by endpoint, method or
    repository never matches one: it leaves tunnels up and acts per request.
    """

    roles: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # host names or globs ("*.docker.io")
    endpoints: tuple[str, ...] = ()  # endpoint kinds from chaos.proxy.classify.KINDS
    methods: tuple[str, ...] = ()
    repository: str | None = None  # glob: "library/*"

    def matches(self, host: str, method: str, endpoint: Endpoint) -> bool:
        host = host.lower().rstrip(".")
        if self.roles and endpoint.role not in self.roles:
            return False
        if self.hosts and not any(fnmatch.fnmatchcase(host, h) for h in self.hosts):
            return False
        if self.endpoints and endpoint.kind not in self.endpoints:
            return False
        if self.methods and method.upper() not in self.methods:
            return False
        if self.repository is not None and not (
            endpoint.repository is not None
            and fnmatch.fnmatchcase(endpoint.repository, self.repository)
        ):
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "roles": list(self.roles),
            "hosts": list(self.hosts),
            "endpoints": list(self.endpoints),
            "methods": list(self.methods),
            "repository": self.repository,
        }


@dataclass(frozen=True)
class FaultSpec:
    name: str
    kind: str
    params: Any  # an instance of the kind's Params dataclass
    match: Match = field(default_factory=Match)
    expires_at: float = 0.0  # unix time

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "params": dataclasses.asdict(self.params),
            "match": self.match.to_dict(),
            "expires_at": self.expires_at,
        }


_SPEC_FIELDS = ("name", "kind", "params", "match", "ttl_s", "expires_at")
_MATCH_FIELDS = ("roles", "hosts", "endpoints", "methods", "repository")


def parse_fault_spec(data: Any, *, now: float | None = None) -> FaultSpec:
    """Validate a plain dict (from JSON or YAML) into a FaultSpec.

    Keys: name, kind, params (the kind's), match, and either ttl_s (seconds from
    now, default 300) or expires_at (unix time, as GET /faults returns it).
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
    return FaultSpec(name, kind_name, params, match, _parse_expiry(data, now))


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
        if kind not in KINDS:
            raise FaultSpecError(
                "match.endpoints", f"unknown endpoint {kind!r} (expected one of: {', '.join(KINDS)})"
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
    return Match(roles, hosts, endpoints, methods, repository)


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


@dataclass
class ActiveFault:
    spec: FaultSpec
    kind: FaultKind  # holds any per-fault state a kind keeps (counters, ...)


class FaultSet:
    """Active faults in insertion order; expired ones vanish the next time anyone looks."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._faults: dict[str, ActiveFault] = {}

    def add(self, spec: FaultSpec) -> None:
        self._prune()
        if spec.name in self._faults:
            raise DuplicateFault(f"fault {spec.name!r} already exists")
        self._faults[spec.name] = _activate(spec)

    def replace(self, spec: FaultSpec) -> None:
        """Swap the fault of the same name, keeping its place in the order."""
        self._prune()
        if spec.name not in self._faults:
            raise UnknownFault(f"no fault named {spec.name!r}")
        self._faults[spec.name] = _activate(spec)

    def remove(self, name: str) -> None:
        self._prune()
        if self._faults.pop(name, None) is None:
            raise UnknownFault(f"no fault named {name!r}")

    def clear(self) -> None:
        self._faults.clear()

    def specs(self) -> list[FaultSpec]:
        self._prune()
        return [active.spec for active in self._faults.values()]

    def matching(self, host: str, method: str, endpoint: Endpoint) -> list[ActiveFault]:
        self._prune()
        return [a for a in self._faults.values() if a.spec.match.matches(host, method, endpoint)]

    def _prune(self) -> None:
        now = self._clock()
        for name in [n for n, a in self._faults.items() if a.spec.expires_at <= now]:
            del self._faults[name]


def _activate(spec: FaultSpec) -> ActiveFault:
    return ActiveFault(spec, kinds()[spec.kind](spec.params))


def run_hook(faults: list[ActiveFault], hook: str, flow: Any) -> list[str]:
    """Call `hook` ("on_connect", "on_request", "on_response_headers") on each fault in
    order; return the names of those that acted. Stops once the flow is killed or,
    before the response phase, answered: later faults have nothing left to act on."""
    applied = []
    for active in faults:
        if getattr(active.kind, hook)(flow):
            applied.append(active.spec.name)
        if flow.error is not None or (hook != "on_response_headers" and flow.response is not None):
            break
    return applied
