"""FaultSpec: one fault as data, and its validation from a plain dict.

parse_fault_spec turns what the control API, `--set hub_faults` or a scenario
gives (JSON or YAML) into a FaultSpec: the kind's typed Params, the Match
(match.py), the Trigger (triggers.py) and the expiry. Bad input is rejected
whole with a FaultSpecError naming the field ("match.methods").
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos.errors import UsageError, quoted
from chaos.faults.match import Match
from chaos.faults.numbers import MAX_DEPTH, NumberProblem, plain_number, too_deep
from chaos.faults.registry import kinds
from chaos.faults.triggers import Trigger, TriggerError, parse_trigger
from chaos.vocab.endpoints import ENDPOINT_SELECTORS, ROLES
from chaos.vocab.names import ORIGINS

DEFAULT_TTL_S = 300.0
"""A fault nobody removes still ends: a crashed runner cannot leave Hub 'down' for ever."""
MAX_TTL_S = 86400.0
"""24 hours: the longest a fault may live, so "every fault expires on its own" holds
for expires_at too, and a typo such as ttl_s: 1e12 is an error, not a permanent outage."""

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


@dataclass(frozen=True)
class Counters:
    """What an active fault has done so far; FaultSet.specs() sets a snapshot on each spec."""

    matched: int = 0  # requests that matched (CONNECTs only for kinds acting on them)
    fired: int = 0  # of those, how many the trigger picked
    applied: int = 0  # of those, how many the kind actually acted on

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FaultSpec:
    """One fault as given: parse_fault_spec makes it, FaultSet takes it."""

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
_MATCH_FIELDS = ("roles", "hosts", "endpoints", "methods", "repository", "clients", "origins")


def parse_fault_spec(data: Any, *, now: float | None = None) -> FaultSpec:
    """Validate a plain dict (from JSON or YAML) into a FaultSpec.

    Keys: name, kind, params (the kind's), match, trigger (triggers.py), and
    either ttl_s (seconds from now, default 300, at most MAX_TTL_S) or expires_at
    (unix time, as GET /faults returns it, at most MAX_TTL_S from now).
    `counters`, as GET /faults shows them, is accepted and ignored so a listed
    fault can be sent back as it is.
    Raises FaultSpecError naming the offending field.
    """
    now = time.time() if now is None else now
    if not isinstance(data, Mapping):
        raise FaultSpecError("fault", f"expected a mapping, got {_type_name(data)}")
    deep = too_deep(data)
    if deep is not None:
        raise FaultSpecError(_cut(deep), f"nested deeper than {MAX_DEPTH} levels")
    _reject_unknown(data, _SPEC_FIELDS, "")

    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise FaultSpecError(
            "name",
            f"expected lowercase letters, digits, '.', '_' or '-' (at most 63), got {quoted(name)}",
        )
    kind_name = data.get("kind")
    known = kinds()
    if kind_name not in known:
        raise FaultSpecError(
            "kind", f"unknown fault kind {quoted(kind_name)} (expected one of: {', '.join(sorted(known))})"
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
        if expires_at - now > MAX_TTL_S:
            raise FaultSpecError("expires_at", f"{expires_at:g} is more than {MAX_TTL_S:g} s (24 h) from now")
        return expires_at
    ttl = _number(data.get("ttl_s", DEFAULT_TTL_S), "ttl_s")
    if ttl <= 0:
        raise FaultSpecError("ttl_s", f"must be positive, got {ttl:g}")
    if ttl > MAX_TTL_S:
        raise FaultSpecError("ttl_s", f"at most {MAX_TTL_S:g} s (24 h), got {ttl:g}")
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
                _cut(f"params.{key}"),
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
            number = _number(value, where)  # finite and of bounded size before float() sees it
            if wanted is int and not float(number).is_integer():
                continue
            if number < 0:
                raise FaultSpecError(where, f"must not be negative, got {number:g}")
            return wanted(number)
        if wanted is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(a, "__name__", str(a)) for a in allowed)
    raise FaultSpecError(where, f"expected {names}, got {_type_name(value)} {quoted(value)}")


def _parse_match(raw: Any) -> Match:
    if raw is None:
        return Match()
    if not isinstance(raw, Mapping):
        raise FaultSpecError("match", f"expected a mapping, got {_type_name(raw)}")
    _reject_unknown(raw, _MATCH_FIELDS, "match.")
    roles = _string_list(raw.get("roles"), "match.roles")
    for role in roles:
        if role not in ROLES:
            raise FaultSpecError("match.roles", f"unknown role {quoted(role)} (expected one of: {', '.join(ROLES)})")
    endpoints = _string_list(raw.get("endpoints"), "match.endpoints")
    for kind in endpoints:
        if kind not in ENDPOINT_SELECTORS:
            raise FaultSpecError(
                "match.endpoints",
                f"unknown endpoint {quoted(kind)} (expected one of: {', '.join(ENDPOINT_SELECTORS)})",
            )
    methods = tuple(m.upper() for m in _string_list(raw.get("methods"), "match.methods"))
    for method in methods:
        if not _METHOD.match(method):
            raise FaultSpecError("match.methods", f"not an HTTP method: {quoted(method)}")
    hosts = tuple(h.lower() for h in _string_list(raw.get("hosts"), "match.hosts"))
    for host in hosts:
        if not _HOST_GLOB.match(host):
            raise FaultSpecError("match.hosts", f"bad host glob {quoted(host)} (letters, digits, '.', '-', '*', '?')")
    repository = raw.get("repository")
    if repository is not None and (
        not isinstance(repository, str) or not _REPOSITORY_GLOB.match(repository)
    ):
        raise FaultSpecError(
            "match.repository",
            f"bad glob {quoted(repository)} (lowercase name characters, '/', '*', '?')",
        )
    clients = tuple(c.lower() for c in _string_list(raw.get("clients"), "match.clients"))
    for client in clients:
        _check_client_pattern(client)
    origins = _string_list(raw.get("origins"), "match.origins")
    for origin in origins:
        if origin not in ORIGINS:
            raise FaultSpecError(
                "match.origins", f"unknown origin {quoted(origin)} (expected one of: {', '.join(ORIGINS)})"
            )
    return Match(roles, hosts, endpoints, methods, repository, clients, origins)


def _check_client_pattern(pattern: str) -> None:
    """Reject client patterns that could never match an IP address."""
    where = "match.clients"
    if "/" in pattern:
        try:
            ipaddress.ip_network(pattern, strict=False)
        except ValueError as err:
            raise FaultSpecError(where, f"bad CIDR {quoted(pattern)}: {err}") from None
        return
    if not any(c in pattern for c in "*?"):
        try:
            ipaddress.ip_address(pattern)
        except ValueError:
            raise FaultSpecError(where, f"{quoted(pattern)} is not an IP address, glob or CIDR") from None
        return
    if not _CLIENT_GLOB.match(pattern):
        raise FaultSpecError(where, f"bad address glob {quoted(pattern)} (digits, '.', ':', hex, '*', '?')")
    if ":" not in pattern:  # an IPv4 glob: its literal parts must be octets
        parts = pattern.split(".")
        literal = [p for p in parts if not any(c in p for c in "*?")]
        if len(parts) > 4 or any(not p.isdigit() or int(p) > 255 for p in literal):
            raise FaultSpecError(where, f"address glob {quoted(pattern)} can never match an IPv4 address")


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FaultSpecError(where, f"expected a list of non-empty strings, got {quoted(value)}")
    return tuple(value)


def _number(value: Any, where: str) -> float:
    try:
        return float(plain_number(value))
    except NumberProblem as err:
        detail = f" {quoted(value)}" if isinstance(value, str) else ""
        raise FaultSpecError(where, f"{err}{detail}") from None


def _reject_unknown(data: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise FaultSpecError(_cut(f"{prefix}{key}"), f"unknown field (expected: {', '.join(allowed)})")


def _cut(field_name: str, limit: int = 80) -> str:
    """A field name made of user input (an unknown key), short enough for one line."""
    return field_name if len(field_name) <= limit else f"{field_name[: limit - 3]}..."


def _type_name(value: Any) -> str:
    return type(value).__name__
