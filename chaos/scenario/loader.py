"""YAML scenario -> chaos.scenario.model, with errors that name file and line.

Validation is separate from running (Chaos Toolkit's validate_* habit), and
stricter: unknown keys are errors with a did-you-mean, not silently ignored.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from chaos.errors import BadReference, ScenarioError
from chaos.images.synth import parse_size
from chaos.reference import parse_reference
from chaos.scenario.marked_yaml import MarkedDict, MarkedList, load_marked
from chaos.scenario.model import (
    CheckAction,
    ClearAction,
    Expectation,
    FaultAction,
    LabSpec,
    PullAction,
    PushAction,
    Scenario,
    SeedImage,
    Step,
    User,
)

STEP_KINDS = ("pull", "push", "check", "fault", "clear")
DEFAULT_STEP_TIMEOUT_S = 120.0
ENDPOINT_KINDS = ("ping", "token", "manifest", "blob", "blob_upload", "tags", "catalog", "blob_bytes", "requests")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/v[0-9]+)?$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Ctx:
    """Where we are in the file, for messages."""

    def __init__(self, filename: str):
        self.filename = filename

    def fail(self, line: int, message: str) -> ScenarioError:
        return ScenarioError(f"{self.filename}:{line}: {message}")

    def loc(self, line: int) -> str:
        return f"{self.filename}:{line}"


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    doc = load_marked(path)
    return parse_scenario(doc, str(path))


def parse_scenario(doc: Any, filename: str) -> Scenario:
    ctx = _Ctx(filename)
    if doc is None:
        raise ctx.fail(1, "empty scenario file")
    if not isinstance(doc, MarkedDict):
        raise ctx.fail(getattr(doc, "line", 1), "a scenario is a mapping with name, lab and steps")
    _known_keys(ctx, doc, ("name", "description", "lab", "steps"), "scenario")
    name = _required_str(ctx, doc, "name", "scenario")
    description = _optional_str(ctx, doc, "description") or ""
    lab = _parse_lab(ctx, doc.get("lab"), doc.line_of("lab")) if "lab" in doc else LabSpec()
    steps_node = doc.get("steps")
    if not isinstance(steps_node, MarkedList) or not steps_node:
        raise ctx.fail(doc.line_of("steps"), "steps: expected a non-empty list of steps")
    steps: list[Step] = []
    seen: dict[str, str] = {}
    for index, node in enumerate(steps_node):
        step = _parse_step(ctx, node, steps_node.line_of(index), index)
        if step.name in seen:
            raise ctx.fail(int(step.loc.rsplit(":", 1)[1]), f"duplicate step name {step.name!r} (first at {seen[step.name]})")
        seen[step.name] = step.loc
        steps.append(step)
    _check_step_references(ctx, steps)
    _check_logins(ctx, steps, lab)
    return Scenario(name=name, description=description, path=filename, lab=lab, steps=tuple(steps))


# -- lab -------------------------------------------------------------------


def _parse_lab(ctx: _Ctx, node: Any, line: int) -> LabSpec:
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "lab: expected a mapping with users and images")
    _known_keys(ctx, node, ("users", "images", "push_registry", "seed"), "lab")
    users = []
    for index, item in enumerate(_list(ctx, node, "users")):
        item_line = node["users"].line_of(index)
        if not isinstance(item, MarkedDict):
            raise ctx.fail(item_line, "lab.users: each user is a mapping with name and password")
        _known_keys(ctx, item, ("name", "password"), "user")
        users.append(User(_required_str(ctx, item, "name", "user"), _required_str(ctx, item, "password", "user")))
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise ctx.fail(node.line_of("users"), "lab.users: duplicate user name")
    images = []
    seen_refs: set[str] = set()
    for index, item in enumerate(_list(ctx, node, "images")):
        item_line = node["images"].line_of(index)
        image = _parse_seed_image(ctx, item, item_line)
        if str(image.ref) in seen_refs:
            raise ctx.fail(item_line, f"lab.images: {image.ref.familiar} is listed twice")
        seen_refs.add(str(image.ref))
        images.append(image)
    push_registry = _optional_bool(ctx, node, "push_registry") or False
    seed = _optional_str(ctx, node, "seed") or "hub-chaos"
    return LabSpec(users=tuple(users), images=tuple(images), push_registry=push_registry, seed=seed)


def _parse_seed_image(ctx: _Ctx, node: Any, line: int) -> SeedImage:
    if isinstance(node, str):
        node_dict = MarkedDict(ref=node)
        node_dict.line, node_dict.key_lines = line, {}
        node = node_dict
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "lab.images: each image is a reference or a mapping with ref and size")
    _known_keys(ctx, node, ("ref", "size", "private", "readers", "layers", "platforms"), "image")
    ref = _reference(ctx, node, "ref")
    if ref.digest:
        raise ctx.fail(node.line_of("ref"), "lab.images: seed images are named by tag, not digest")
    size = _size(ctx, node, "size", default=2_000_000)
    layers = node.get("layers", 2)
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= 16:
        raise ctx.fail(node.line_of("layers"), f"layers: expected a whole number from 1 to 16, got {layers!r}")
    platforms = node.get("platforms", ["linux/amd64"])
    if isinstance(platforms, str):
        platforms = [platforms]
    if not isinstance(platforms, list) or not platforms or not all(isinstance(p, str) and _PLATFORM.match(p) for p in platforms):
        raise ctx.fail(node.line_of("platforms"), f"platforms: expected os/arch names like linux/amd64, got {platforms!r}")
    readers = node.get("readers", [])
    if not isinstance(readers, list) or not all(isinstance(r, str) for r in readers):
        raise ctx.fail(node.line_of("readers"), "readers: expected a list of user names")
    return SeedImage(
        ref=ref,
        size_bytes=size,
        private=_optional_bool(ctx, node, "private") or False,
        readers=tuple(readers),
        layers=layers,
        platforms=tuple(platforms),
        loc=ctx.loc(line),
    )


# -- steps -----------------------------------------------------------------

_COMMON_STEP_KEYS = ("name", "description", "expect", "timeout")
_STEP_EXTRA_KEYS = {"pull": ("login",), "push": (), "check": (), "fault": (), "clear": ()}


def _parse_step(ctx: _Ctx, node: Any, line: int, index: int) -> Step:
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, f"steps[{index}]: a step is a mapping with one of: {', '.join(STEP_KINDS)}")
    kinds = [k for k in STEP_KINDS if k in node]
    if not kinds:
        unknown = [k for k in node if k not in _COMMON_STEP_KEYS and k != "login"]
        hint = _did_you_mean(unknown[0], STEP_KINDS) if unknown else ""
        raise ctx.fail(line, f"step has no kind (expected one of: {', '.join(STEP_KINDS)}){hint}")
    if len(kinds) > 1:
        raise ctx.fail(line, f"step has two kinds ({' and '.join(kinds)}); split it into two steps")
    kind = kinds[0]
    _known_keys(ctx, node, _COMMON_STEP_KEYS + (kind,) + _STEP_EXTRA_KEYS[kind], f"{kind} step")
    name = node.get("name", f"{index + 1:02d}-{kind}")
    if not isinstance(name, str) or not _STEP_NAME.match(name):
        raise ctx.fail(node.line_of("name"), f"name: step names are letters, digits, '.', '_' and '-', got {name!r}")
    timeout = node.get("timeout", DEFAULT_STEP_TIMEOUT_S)
    timeout_s = _duration(ctx, timeout, node.line_of("timeout"), "timeout")
    action = _ACTION_PARSERS[kind](ctx, node, node.line_of(kind))
    expect = _parse_expect(ctx, node.get("expect"), node.line_of("expect"), kind)
    return Step(
        name=name,
        kind=kind,
        action=action,
        expect=expect,
        timeout_s=timeout_s,
        loc=ctx.loc(line),
        description=_optional_str(ctx, node, "description") or "",
    )


def _parse_pull(ctx: _Ctx, node: MarkedDict, line: int) -> PullAction:
    value = node["pull"]
    if not isinstance(value, str):
        raise ctx.fail(line, "pull: expected an image reference like alpine:3.19")
    ref = _reference_value(ctx, value, line)
    login = _optional_str(ctx, node, "login")
    return PullAction(image=ref, login=login)


def _parse_push(ctx: _Ctx, node: MarkedDict, line: int) -> PushAction:
    value = node["push"]
    if not isinstance(value, MarkedDict):
        raise ctx.fail(line, "push: expected a mapping with image and to")
    _known_keys(ctx, value, ("image", "to", "size", "login"), "push")
    ref = _reference(ctx, value, "image")
    to = value.get("to", "mirror")
    if to not in ("mirror", "hub", "push-registry"):
        raise ctx.fail(value.line_of("to"), f"to: unknown push target {to!r} (expected one of: mirror, hub, push-registry)")
    return PushAction(image=ref, to=to, size_bytes=_size(ctx, value, "size", default=1_000_000), login=_optional_str(ctx, value, "login"))


def _parse_check(ctx: _Ctx, node: MarkedDict, line: int) -> CheckAction:
    value = node["check"]
    if not isinstance(value, MarkedDict) or not value:
        raise ctx.fail(line, "check: expected a mapping with cached, not_cached, storage_unchanged_since or catalog_unchanged_since")
    _known_keys(ctx, value, ("cached", "not_cached", "storage_unchanged_since", "catalog_unchanged_since"), "check")

    def repositories(key: str) -> tuple[str, ...]:
        items = value.get(key, [])
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            raise ctx.fail(value.line_of(key), f"{key}: expected a list of repositories")
        out = []
        for item in items:
            ref = _reference_value(ctx, item, value.line_of(key)) if isinstance(item, str) else None
            if ref is None:
                raise ctx.fail(value.line_of(key), f"{key}: expected repository names, got {item!r}")
            out.append(ref.repository)
        return tuple(out)

    return CheckAction(
        cached=repositories("cached"),
        not_cached=repositories("not_cached"),
        storage_unchanged_since=_optional_str(ctx, value, "storage_unchanged_since"),
        catalog_unchanged_since=_optional_str(ctx, value, "catalog_unchanged_since"),
    )


def _parse_fault(ctx: _Ctx, node: MarkedDict, line: int) -> FaultAction:
    from chaos.faults.base import FaultSpecError, parse_fault_spec

    value = node["fault"]
    if not isinstance(value, MarkedDict):
        raise ctx.fail(line, "fault: expected a mapping with name and kind")
    plain = _plain(value)
    try:
        parse_fault_spec(plain)
    except FaultSpecError as exc:
        field = getattr(exc, "field", None)
        top = field.split(".")[0] if isinstance(field, str) else None
        raise ctx.fail(value.line_of(top) if top in value else line, f"fault: {exc}") from None
    return FaultAction(spec=plain)


def _parse_clear(ctx: _Ctx, node: MarkedDict, line: int) -> ClearAction:
    value = node["clear"]
    if value in ("all", None, True):
        return ClearAction()
    if isinstance(value, str):
        return ClearAction(names=(value,))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ClearAction(names=tuple(value))
    raise ctx.fail(line, "clear: expected a fault name, a list of names, or 'all'")


_ACTION_PARSERS = {
    "pull": _parse_pull,
    "push": _parse_push,
    "check": _parse_check,
    "fault": _parse_fault,
    "clear": _parse_clear,
}

_EXPECT_KEYS = ("ok", "error", "message", "served_by", "from_cache", "same_digest_as", "upstream")


def _parse_expect(ctx: _Ctx, node: Any, line: int, kind: str) -> Expectation:
    if node is None:
        return Expectation(loc=ctx.loc(line))
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "expect: expected a mapping")
    _known_keys(ctx, node, _EXPECT_KEYS, "expect")
    if kind in ("check", "fault", "clear") and set(node) - {"ok"}:
        raise ctx.fail(line, f"expect: a {kind} step only takes 'ok'")
    ok = _optional_bool(ctx, node, "ok")
    error = node.get("error", [])
    if isinstance(error, str):
        error = [error]
    if not isinstance(error, list) or not all(isinstance(e, str) and re.fullmatch(r"[A-Z_]+", e) for e in error):
        raise ctx.fail(node.line_of("error"), f"error: expected registry error codes like UNAUTHORIZED, got {node.get('error')!r}")
    if error and ok is True:
        raise ctx.fail(node.line_of("error"), "error: an expected error code contradicts ok: true")
    message = None
    if "message" in node:
        if not isinstance(node["message"], str):
            raise ctx.fail(node.line_of("message"), "message: expected a text or regular expression")
        try:
            message = re.compile(node["message"])
        except re.error as exc:
            raise ctx.fail(node.line_of("message"), f"message: not a valid regular expression: {exc}") from None
    served_by = node.get("served_by")
    if served_by is not None and served_by not in ("mirror", "hub"):
        raise ctx.fail(node.line_of("served_by"), f"served_by: expected mirror or hub, got {served_by!r}")
    upstream_node = node.get("upstream", {})
    if not isinstance(upstream_node, dict):
        raise ctx.fail(node.line_of("upstream"), "upstream: expected a mapping of endpoint kind to count")
    upstream = []
    for key, count in upstream_node.items():
        key_line = upstream_node.line_of(key) if isinstance(upstream_node, MarkedDict) else line
        if key not in ENDPOINT_KINDS:
            raise ctx.fail(key_line, f"upstream: unknown endpoint kind {key!r}{_did_you_mean(key, ENDPOINT_KINDS)} (expected one of: {', '.join(ENDPOINT_KINDS)})")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ctx.fail(key_line, f"upstream.{key}: expected a count >= 0, got {count!r}")
        upstream.append((key, count))
    return Expectation(
        ok=ok,
        error=tuple(error),
        message=message,
        served_by=served_by,
        from_cache=_optional_bool(ctx, node, "from_cache"),
        same_digest_as=_optional_str(ctx, node, "same_digest_as"),
        upstream=tuple(upstream),
        loc=ctx.loc(line),
    )


def _check_step_references(ctx: _Ctx, steps: list[Step]) -> None:
    """Names a step refers to must be earlier steps (their results must exist)."""
    earlier: set[str] = set()
    for step in steps:
        line = int(step.loc.rsplit(":", 1)[1])
        refs = [("same_digest_as", step.expect.same_digest_as)]
        if isinstance(step.action, CheckAction):
            refs += [
                ("storage_unchanged_since", step.action.storage_unchanged_since),
                ("catalog_unchanged_since", step.action.catalog_unchanged_since),
            ]
        for key, ref in refs:
            if ref is not None and ref not in earlier:
                all_names = [s.name for s in steps]
                where = "a later step" if ref in all_names else "no step"
                raise ctx.fail(line, f"{key}: {ref!r} names {where}; it must name an earlier step{_did_you_mean(ref, sorted(earlier))}")
        earlier.add(step.name)


def _check_logins(ctx: _Ctx, steps: list[Step], lab: LabSpec) -> None:
    users = {u.name for u in lab.users}
    for step in steps:
        login = getattr(step.action, "login", None)
        if login is not None and login not in users:
            line = int(step.loc.rsplit(":", 1)[1])
            raise ctx.fail(line, f"login: unknown user {login!r}; lab.users defines: {', '.join(sorted(users)) or 'nobody'}")


# -- small typed readers -----------------------------------------------------


def _known_keys(ctx: _Ctx, node: MarkedDict, allowed: tuple[str, ...], what: str) -> None:
    for key in node:
        if key not in allowed:
            raise ctx.fail(node.line_of(key), f"unknown key {key!r} in {what}{_did_you_mean(str(key), allowed)} (expected one of: {', '.join(allowed)})")


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _required_str(ctx: _Ctx, node: MarkedDict, key: str, what: str) -> str:
    if key not in node:
        raise ctx.fail(node.line, f"{what}: missing required key {key!r}")
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise ctx.fail(node.line_of(key), f"{key}: expected a non-empty text, got {value!r}")
    return value


def _optional_str(ctx: _Ctx, node: MarkedDict, key: str) -> str | None:
    if key not in node or node[key] is None:
        return None
    value = node[key]
    if not isinstance(value, str):
        raise ctx.fail(node.line_of(key), f"{key}: expected a text, got {value!r}")
    return value


def _optional_bool(ctx: _Ctx, node: MarkedDict, key: str) -> bool | None:
    if key not in node:
        return None
    value = node[key]
    if not isinstance(value, bool):
        raise ctx.fail(node.line_of(key), f"{key}: expected true or false, got {value!r}")
    return value


def _list(ctx: _Ctx, node: MarkedDict, key: str) -> list:
    value = node.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(node.line_of(key), f"{key}: expected a list")
    return value


def _reference(ctx: _Ctx, node: MarkedDict, key: str):
    if key not in node:
        raise ctx.fail(node.line, f"missing required key {key!r}")
    value = node[key]
    if not isinstance(value, str):
        raise ctx.fail(node.line_of(key), f"{key}: expected an image reference, got {value!r}")
    return _reference_value(ctx, value, node.line_of(key))


def _reference_value(ctx: _Ctx, value: str, line: int):
    try:
        return parse_reference(value)
    except BadReference as exc:
        raise ctx.fail(line, str(exc)) from None


def _size(ctx: _Ctx, node: MarkedDict, key: str, default: int) -> int:
    if key not in node:
        return default
    try:
        size = parse_size(node[key])
    except (ValueError, TypeError) as exc:
        raise ctx.fail(node.line_of(key), f"{key}: {exc}") from None
    if size <= 0 or size > 4 * 1024**3:
        raise ctx.fail(node.line_of(key), f"{key}: expected a size between 1 byte and 4 GiB, got {node[key]!r}")
    return size


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def _duration(ctx: _Ctx, value: Any, line: int, key: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]
    else:
        raise ctx.fail(line, f"{key}: expected a duration like 30s, 500ms or 2m, got {value!r}")
    if not 0 < seconds <= 3600:
        raise ctx.fail(line, f"{key}: expected a duration between 0 and 1h, got {value!r}")
    return seconds


def _plain(value: Any) -> Any:
    """Marked containers -> plain dicts/lists (what goes over the control API)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
