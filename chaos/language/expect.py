"""The `expect:` block of a step."""

from __future__ import annotations

import re
from typing import Any

from chaos.errors import quoted
from chaos.language.fields import (
    Ctx,
    comparison,
    did_you_mean,
    duration,
    known_keys,
    line_of,
    optional_bool,
    optional_str,
)
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Counts, Expectation, MirrorAnswer
from chaos.language.schema_parts import COMPARISON, closed_object
from chaos.vocab.endpoints import COUNTABLE
from chaos.vocab.names import ORIGINS, SERVED_BY

EXPECT_KEYS = ("ok", "error", "message", "served_by", "from_cache", "same_digest_as", "mirror", "upstream", "within", "success_rate")
COUNT_FILTERS = ("origin", "status")
MIRROR_KEYS = ("ok", "status", "error", "message")
_STATUS = re.compile(r"^([1-5][0-9][0-9]|[1-5]xx|none)$")
_ERROR_CODE = re.compile(r"[A-Z][A-Z_]*")



def parse_expect(ctx: Ctx, node: Any, line: int, kind: str, allowed: tuple[str, ...]) -> Expectation:
    """The `expect:` block of a `kind` step, which takes the expectations in `allowed`."""
    if node is None:
        return Expectation(loc=ctx.loc(line))
    if not isinstance(node, MarkedDict):
        raise ctx.fail(line, "expect: expected a mapping")
    known_keys(ctx, node, EXPECT_KEYS, "expect")
    for key in node:
        if key not in allowed:
            raise ctx.fail(node.line_of(key), f"expect.{key}: not meaningful for a {kind} step (it takes: {', '.join(allowed)})")
    ok = optional_bool(ctx, node, "ok")
    error = _error_codes(ctx, node)
    if error and ok is True:
        raise ctx.fail(node.line_of("error"), "error: an expected error code contradicts ok: true")
    message = _pattern(ctx, node, "message")
    served_by = node.get("served_by")
    if served_by is not None and served_by not in SERVED_BY:
        raise ctx.fail(node.line_of("served_by"), f"served_by: expected {' or '.join(SERVED_BY)}, got {quoted(served_by)}")
    upstream = counts(ctx, node.get("upstream", {}), node.line_of("upstream"), "upstream")
    mirror = _mirror_answer(ctx, node["mirror"], node.line_of("mirror")) if "mirror" in node else MirrorAnswer()
    within = duration(ctx, node["within"], node.line_of("within"), "within") if "within" in node else None
    success_rate = None
    if "success_rate" in node:
        success_rate = comparison(ctx, node["success_rate"], node.line_of("success_rate"), "success_rate")
        if not 0 <= success_rate.value <= 1:
            raise ctx.fail(node.line_of("success_rate"), f"success_rate: expected a fraction from 0 to 1, got {quoted(node['success_rate'])}")
    return Expectation(
        ok=ok,
        error=tuple(str(e) for e in error),
        message=message,
        served_by=served_by,
        from_cache=optional_bool(ctx, node, "from_cache"),
        same_digest_as=optional_str(ctx, node, "same_digest_as"),
        upstream=upstream,
        mirror=mirror,
        within_s=within,
        success_rate=success_rate,
        loc=ctx.loc(line),
    )


def _error_codes(ctx: Ctx, node: MarkedDict) -> tuple[str, ...]:
    error = node.get("error", [])
    if isinstance(error, str):
        error = [error]
    if not isinstance(error, list) or not all(isinstance(e, str) and _ERROR_CODE.fullmatch(e) for e in error):
        raise ctx.fail(node.line_of("error"), f"error: expected registry error codes like UNAUTHORIZED, got {quoted(node.get('error'))}")
    return tuple(str(e) for e in error)


def _pattern(ctx: Ctx, node: MarkedDict, key: str) -> re.Pattern | None:
    if key not in node:
        return None
    if not isinstance(node[key], str):
        raise ctx.fail(node.line_of(key), f"{key}: expected a text or regular expression")
    try:
        return re.compile(node[key])
    except re.error as exc:
        raise ctx.fail(node.line_of(key), f"{key}: not a valid regular expression: {exc}") from None


def _mirror_answer(ctx: Ctx, node: Any, line: int) -> MirrorAnswer:
    """`mirror: {status: 404, error: MANIFEST_UNKNOWN, message: ..., ok: false}`."""
    if not isinstance(node, MarkedDict) or not node:
        raise ctx.fail(line, f"mirror: expected a mapping with any of: {', '.join(MIRROR_KEYS)}")
    known_keys(ctx, node, MIRROR_KEYS, "expect.mirror")
    status = node.get("status")
    if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599):
        raise ctx.fail(node.line_of("status"), f"mirror.status: expected an HTTP status like 404, got {quoted(status)}")
    ok = optional_bool(ctx, node, "ok")
    error = _error_codes(ctx, node)
    if error and ok is True:
        raise ctx.fail(node.line_of("error"), "mirror.error: an expected error code contradicts ok: true")
    return MirrorAnswer(ok=ok, status=status, error=error, message=_pattern(ctx, node, "message"))


def counts(ctx: Ctx, node: Any, line: int, key: str) -> tuple[Counts, ...]:
    """{endpoint kind: count or comparison, origin: ..., status: ...}, or a list
    of such mappings -> Counts, one per mapping."""
    if isinstance(node, list):
        if not node:
            raise ctx.fail(line, f"{key}: expected at least one mapping of endpoint kind to count")
        return tuple(_one_count(ctx, item, node.line_of(i), key) for i, item in enumerate(node))
    return (_one_count(ctx, node, line, key),) if node else ()


def _one_count(ctx: Ctx, node: Any, line: int, key: str) -> Counts:
    if not isinstance(node, dict):
        raise ctx.fail(line, f"{key}: expected a mapping of endpoint kind to count (and origin, status filters)")
    wanted, origins, status = [], (), None
    for name, value in node.items():
        name_line = line_of(node, name, line)
        if name == "origin":
            origins = tuple(value) if isinstance(value, list) else (value,)
            bad = [o for o in origins if o not in ORIGINS]
            if bad or not origins:
                raise ctx.fail(name_line, f"{key}.origin: unknown origin {quoted(bad[0] if bad else value)} (expected one of: {', '.join(ORIGINS)})")
            continue
        if name == "status":
            status = str(value).lower()
            if isinstance(value, bool) or not _STATUS.match(status):
                raise ctx.fail(name_line, f"{key}.status: expected a status like 404, a class like 5xx, or none, got {quoted(value)}")
            continue
        if name not in COUNTABLE:
            raise ctx.fail(
                name_line,
                f"{key}: unknown endpoint kind {quoted(name)}{did_you_mean(str(name), COUNTABLE + COUNT_FILTERS)} "
                f"(expected one of: {', '.join(COUNTABLE)}; filters: {', '.join(COUNT_FILTERS)})",
            )
        wanted.append((str(name), comparison(ctx, value, name_line, f"{key}.{name}")))
    if not wanted:
        raise ctx.fail(line, f"{key}: filters without anything to count (add e.g. manifest: \">= 1\")")
    return Counts(tuple(wanted), tuple(str(o) for o in origins), status)


def counts_schema() -> dict[str, Any]:
    one = {
        "type": "object", "additionalProperties": False,
        "properties": {
            **{k: COMPARISON for k in COUNTABLE},
            "origin": {"anyOf": [{"enum": list(ORIGINS)}, {"type": "array", "items": {"enum": list(ORIGINS)}}]},
            "status": {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599}, {"type": "string", "pattern": _STATUS.pattern}]},
        },
    }
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}


def mirror_answer_schema() -> dict[str, Any]:
    return closed_object({
        "ok": {"type": "boolean"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "error": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "message": {"type": "string"},
    })
