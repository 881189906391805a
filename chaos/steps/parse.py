"""One step of a scenario file: its kind (the one registered key it has), its
name, deadline, optional repeat and expectations; the kind parses the rest."""

from __future__ import annotations

import re
from typing import Any

from chaos.errors import quoted
from chaos.language.expect import parse_expect
from chaos.language.fields import (
    Ctx,
    did_you_mean,
    duration,
    known_keys,
    optional_str,
    whole_number,
)
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Repeat, Step
from chaos.steps.registry import kinds

DEFAULT_STEP_TIMEOUT_S = 120.0
COMMON_KEYS = ("name", "description", "expect", "timeout", "repeat")
_STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_step(ctx: Ctx, node: Any, line: int, label: str, default_timeout_s: float) -> Step:
    catalogue = kinds()
    names = tuple(catalogue)
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, f"{label}: a step is a mapping with one of: {', '.join(names)}")
    present = [k for k in names if k in node]
    if not present:
        unknown = [k for k in node if k not in COMMON_KEYS]
        hint = did_you_mean(unknown[0], names) if unknown else ""
        raise ctx.fail(line, f"step has no kind (expected one of: {', '.join(names)}){hint}")
    if len(present) > 1:
        raise ctx.fail(line, f"step has two kinds ({' and '.join(present)}); split it into two steps")
    kind_name = present[0]
    kind = catalogue[kind_name]
    known_keys(ctx, node, COMMON_KEYS + (kind_name,) + kind.extra_keys, f"{kind_name} step")
    name = node.get("name", label)
    if not isinstance(name, str) or not _STEP_NAME.match(name):
        raise ctx.fail(node.line_of("name"), f"name: step names are letters, digits, '.', '_' and '-', got {quoted(name)}")
    timeout_s = duration(ctx, node.get("timeout", default_timeout_s), node.line_of("timeout"), "timeout")
    repeat = None
    if "repeat" in node:
        if not kind.repeatable:
            repeatable = [k for k, v in catalogue.items() if v.repeatable]
            raise ctx.fail(node.line_of("repeat"), f"repeat: only {', '.join(repeatable)} steps repeat")
        repeat = parse_repeat(ctx, node["repeat"], node.line_of("repeat"))
    action = kind.parse(ctx, node, node.line_of(kind_name))
    expect = parse_expect(ctx, node.get("expect"), node.line_of("expect"), kind_name, kind.expect_keys)
    if expect.success_rate is not None and repeat is None and kind.attempts_per_run(action) < 2:
        raise ctx.fail(node.line_of("expect"), "expect.success_rate: needs repeat, or several images to pull")
    return Step(
        name=str(name), kind=kind_name, action=action, expect=expect, timeout_s=timeout_s,
        loc=ctx.loc(line), description=optional_str(ctx, node, "description") or "", repeat=repeat,
    )


def parse_repeat(ctx: Ctx, value: Any, line: int) -> Repeat:
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


def describe(step: Step) -> str:
    """The step in a few words, with its repeat."""
    text = kinds()[step.kind].describe(step.action)
    if step.repeat:
        text += f" x{step.repeat.times}" if step.repeat.times else f" for {step.repeat.duration_s:g}s"
    return text
