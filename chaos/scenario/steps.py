"""One step of a scenario: its kind (exactly one of STEP_KINDS), its action,
its deadline, an optional repeat, and its expectations."""

from __future__ import annotations

import re
from typing import Any

from chaos.scenario.expect import counts, parse_expect
from chaos.scenario.fields import (
    Ctx,
    a_list,
    did_you_mean,
    duration,
    known_keys,
    optional_bool,
    optional_str,
    plain,
    reference,
    reference_value,
    size,
    whole_number,
)
from chaos.scenario.marked_yaml import MarkedDict
from chaos.clients.engines import ENGINES
from chaos.scenario.model import (
    CheckAction,
    ClearAction,
    FaultAction,
    PublishAction,
    PullAction,
    PushAction,
    Repeat,
    RestartAction,
    SeedImage,
    Step,
    WaitAction,
)

STEP_KINDS = ("pull", "push", "check", "fault", "clear", "wait", "restart", "publish")
COMPONENTS = ("mirror", "hub", "auth", "proxy", "cdn", "push-registry")
DEFAULT_STEP_TIMEOUT_S = 120.0
_COMMON_KEYS = ("name", "description", "expect", "timeout", "repeat")
_EXTRA_KEYS = {"pull": ("login", "concurrency", "engine")}
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/v[0-9]+)?$")
_REPEATABLE = ("pull", "push", "check")


def parse_step(ctx: Ctx, node: Any, line: int, label: str, default_timeout_s: float) -> Step:
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, f"{label}: a step is a mapping with one of: {', '.join(STEP_KINDS)}")
    kinds = [k for k in STEP_KINDS if k in node]
    if not kinds:
        unknown = [k for k in node if k not in _COMMON_KEYS]
        hint = did_you_mean(unknown[0], STEP_KINDS) if unknown else ""
        raise ctx.fail(line, f"step has no kind (expected one of: {', '.join(STEP_KINDS)}){hint}")
    if len(kinds) > 1:
        raise ctx.fail(line, f"step has two kinds ({' and '.join(kinds)}); split it into two steps")
    kind = kinds[0]
    known_keys(ctx, node, _COMMON_KEYS + (kind,) + _EXTRA_KEYS.get(kind, ()), f"{kind} step")
    name = node.get("name", label)
    if not isinstance(name, str) or not _STEP_NAME.match(name):
        raise ctx.fail(node.line_of("name"), f"name: step names are letters, digits, '.', '_' and '-', got {name!r}")
    timeout_s = duration(ctx, node.get("timeout", default_timeout_s), node.line_of("timeout"), "timeout")
    repeat = None
    if "repeat" in node:
        if kind not in _REPEATABLE:
            raise ctx.fail(node.line_of("repeat"), f"repeat: only {', '.join(_REPEATABLE)} steps repeat")
        repeat = _parse_repeat(ctx, node["repeat"], node.line_of("repeat"))
    action = _PARSERS[kind](ctx, node, node.line_of(kind))
    expect = parse_expect(ctx, node.get("expect"), node.line_of("expect"), kind)
    if expect.success_rate is not None and repeat is None and not (kind == "pull" and len(action.images) > 1):
        raise ctx.fail(node.line_of("expect"), "expect.success_rate: needs repeat, or several images to pull")
    return Step(
        name=str(name), kind=kind, action=action, expect=expect, timeout_s=timeout_s,
        loc=ctx.loc(line), description=optional_str(ctx, node, "description") or "", repeat=repeat,
    )


def _parse_repeat(ctx: Ctx, value: Any, line: int) -> Repeat:
    if isinstance(value, int) and not isinstance(value, bool):
        return Repeat(times=whole_number(ctx, value, line, "repeat", 1, 10_000))
    if not isinstance(value, MarkedDict):
        raise ctx.fail(line, "repeat: expected a count, or a mapping with times or duration (and interval)")
    known_keys(ctx, value, ("times", "duration", "interval"), "repeat")
    if ("times" in value) == ("duration" in value):
        raise ctx.fail(line, "repeat: give exactly one of times or duration")
    times = whole_number(ctx, value["times"], value.line_of("times"), "repeat.times", 1, 10_000) if "times" in value else None
    span = duration(ctx, value["duration"], value.line_of("duration"), "repeat.duration") if "duration" in value else None
    interval = duration(ctx, value.get("interval", 0), value.line_of("interval"), "repeat.interval", maximum_s=600, allow_zero=True)
    return Repeat(times=times, duration_s=span, interval_s=interval)


def _parse_pull(ctx: Ctx, node: MarkedDict, line: int) -> PullAction:
    value = node["pull"]
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise ctx.fail(line, "pull: expected an image reference like alpine:3.19, or a list of them")
    images = tuple(reference_value(ctx, item, line) for item in items)
    concurrency = whole_number(ctx, node.get("concurrency", 1), node.line_of("concurrency"), "concurrency", 1, 64)
    engine = optional_str(ctx, node, "engine")
    if engine is not None and engine not in ENGINES:
        raise ctx.fail(node.line_of("engine"), f"engine: unknown engine {engine!r}{did_you_mean(engine, ENGINES)} (available: {', '.join(ENGINES)})")
    return PullAction(images=images, login=optional_str(ctx, node, "login"), concurrency=concurrency, engine=engine)


def _parse_push(ctx: Ctx, node: MarkedDict, line: int) -> PushAction:
    value = node["push"]
    if not isinstance(value, MarkedDict):
        raise ctx.fail(line, "push: expected a mapping with image and to")
    known_keys(ctx, value, ("image", "to", "size", "login"), "push")
    ref = reference(ctx, value, "image")
    to = value.get("to", "mirror")
    if to not in ("mirror", "hub", "push-registry"):
        raise ctx.fail(value.line_of("to"), f"to: unknown push target {to!r} (expected one of: mirror, hub, push-registry)")
    login = optional_str(ctx, value, "login")
    if to == "hub" and login is None:
        raise ctx.fail(value.line_of("to"), "push to hub needs a login (Hub never takes anonymous pushes)")
    return PushAction(image=ref, to=str(to), size_bytes=size(ctx, value, "size", default=1_000_000), login=login)


CHECK_KEYS = ("cached", "not_cached", "storage_unchanged_since", "catalog_unchanged_since", "storage_grew_since", "tap")


def parse_check_body(ctx: Ctx, value: Any, line: int, what: str = "check") -> CheckAction:
    if not isinstance(value, MarkedDict) or not value:
        raise ctx.fail(line, f"{what}: expected a mapping with any of: {', '.join(CHECK_KEYS)}")
    known_keys(ctx, value, CHECK_KEYS, what)

    def repositories(key: str) -> tuple[str, ...]:
        items = value.get(key, [])
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            raise ctx.fail(value.line_of(key), f"{key}: expected a list of repositories")
        out = []
        for item in items:
            if not isinstance(item, str):
                raise ctx.fail(value.line_of(key), f"{key}: expected repository names, got {item!r}")
            out.append(reference_value(ctx, item, value.line_of(key)).repository)
        return tuple(out)

    tap_since, tap_counts = None, ()
    if "tap" in value:
        tap = value["tap"]
        if not isinstance(tap, MarkedDict):
            raise ctx.fail(value.line_of("tap"), "tap: expected a mapping with since and counts")
        known_keys(ctx, tap, ("since", "counts"), "tap")
        tap_since = optional_str(ctx, tap, "since") or "start"
        if "counts" not in tap:
            raise ctx.fail(tap.line, "tap: missing required key 'counts'")
        tap_counts = counts(ctx, tap["counts"], tap.line_of("counts"), "tap.counts")
    return CheckAction(
        cached=repositories("cached"),
        not_cached=repositories("not_cached"),
        storage_unchanged_since=optional_str(ctx, value, "storage_unchanged_since"),
        catalog_unchanged_since=optional_str(ctx, value, "catalog_unchanged_since"),
        storage_grew_since=optional_str(ctx, value, "storage_grew_since"),
        tap_since=tap_since,
        tap_counts=tap_counts,
    )


def _parse_check(ctx: Ctx, node: MarkedDict, line: int) -> CheckAction:
    return parse_check_body(ctx, node["check"], line)


def _parse_fault(ctx: Ctx, node: MarkedDict, line: int) -> FaultAction:
    from chaos.faults.spec import FaultSpecError, parse_fault_spec

    value = node["fault"]
    if not isinstance(value, MarkedDict):
        raise ctx.fail(line, "fault: expected a mapping with name and kind")
    spec = plain(value)
    try:
        parse_fault_spec(spec)
    except FaultSpecError as exc:
        top = exc.field.split(".")[0] if isinstance(exc.field, str) else None
        where = value.line_of(top) if top in value else line
        # Point at the nested key when the problem is inside params/match/trigger.
        if top in value and isinstance(value[top], MarkedDict) and "." in exc.field:
            inner = exc.field.split(".")[1]
            where = value[top].line_of(inner) if inner in value[top] else where
        raise ctx.fail(where, f"fault: {exc}") from None
    return FaultAction(spec=spec)


def _parse_clear(ctx: Ctx, node: MarkedDict, line: int) -> ClearAction:
    value = node["clear"]
    if value in ("all", None, True):
        return ClearAction()
    if isinstance(value, str):
        return ClearAction(names=(str(value),))
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ClearAction(names=tuple(str(v) for v in value))
    raise ctx.fail(line, "clear: expected a fault name, a list of names, or 'all'")


def _parse_wait(ctx: Ctx, node: MarkedDict, line: int) -> WaitAction:
    value = node["wait"]
    if not isinstance(value, MarkedDict):
        return WaitAction(seconds=duration(ctx, value, line, "wait"))
    known_keys(ctx, value, ("until", "interval"), "wait")
    if "until" not in value:
        raise ctx.fail(line, "wait: expected a duration, or a mapping with until (a check) and interval")
    until = parse_check_body(ctx, value["until"], value.line_of("until"), "wait.until")
    interval = duration(ctx, value.get("interval", 0.5), value.line_of("interval"), "wait.interval", maximum_s=600)
    return WaitAction(until=until, interval_s=interval)


def _parse_restart(ctx: Ctx, node: MarkedDict, line: int) -> RestartAction:
    value = node["restart"]
    if value not in COMPONENTS:
        raise ctx.fail(line, f"restart: unknown component {value!r}{did_you_mean(str(value), COMPONENTS)} (expected one of: {', '.join(COMPONENTS)})")
    return RestartAction(component=str(value))


def _parse_publish(ctx: Ctx, node: MarkedDict, line: int) -> PublishAction:
    value = node["publish"]
    if not isinstance(value, MarkedDict):
        raise ctx.fail(line, "publish: expected a mapping with image (and size, private, seed)")
    known_keys(ctx, value, ("image", "size", "private", "readers", "layers", "platforms", "seed"), "publish")
    renamed = MarkedDict((("ref" if k == "image" else k), v) for k, v in value.items() if k != "seed")
    renamed.line = value.line
    renamed.key_lines = {("ref" if k == "image" else k): v for k, v in value.key_lines.items()}
    image = parse_seed_image(ctx, renamed, line)
    seed = optional_str(ctx, value, "seed") or f"published-at-line-{line}"
    return PublishAction(image=image, content_seed=seed)


def parse_seed_image(ctx: Ctx, node: Any, line: int) -> SeedImage:
    if isinstance(node, str):
        node_dict = MarkedDict(ref=node)
        node_dict.line, node_dict.key_lines = line, {}
        node = node_dict
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "images: each image is a reference or a mapping with ref and size")
    known_keys(ctx, node, ("ref", "size", "private", "readers", "layers", "platforms"), "image")
    ref = reference(ctx, node, "ref")
    if ref.digest:
        raise ctx.fail(node.line_of("ref"), "images are named by tag, not digest")
    layers = whole_number(ctx, node.get("layers", 2), node.line_of("layers"), "layers", 1, 16)
    platforms = node.get("platforms", ["linux/amd64"])
    if isinstance(platforms, str):
        platforms = [platforms]
    if not isinstance(platforms, list) or not platforms or not all(isinstance(p, str) and _PLATFORM.match(p) for p in platforms):
        raise ctx.fail(node.line_of("platforms"), f"platforms: expected os/arch names like linux/amd64, got {plain(platforms)!r}")
    readers = a_list(ctx, node, "readers")
    if not all(isinstance(r, str) for r in readers):
        raise ctx.fail(node.line_of("readers"), "readers: expected a list of user names")
    return SeedImage(
        ref=ref,
        size_bytes=size(ctx, node, "size", default=2_000_000),
        private=optional_bool(ctx, node, "private") or False,
        readers=tuple(str(r) for r in readers),
        layers=layers,
        platforms=tuple(str(p) for p in platforms),
        loc=ctx.loc(line),
    )


_PARSERS = {
    "pull": _parse_pull,
    "push": _parse_push,
    "check": _parse_check,
    "fault": _parse_fault,
    "clear": _parse_clear,
    "wait": _parse_wait,
    "restart": _parse_restart,
    "publish": _parse_publish,
}
