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
from chaos.language.model import Expectation
from chaos.language.schema_parts import COMPARISON
from chaos.vocab.endpoints import COUNTABLE
from chaos.vocab.names import SERVED_BY

EXPECT_KEYS = ("ok", "error", "message", "served_by", "from_cache", "same_digest_as", "upstream", "within", "success_rate")



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
    error = node.get("error", [])
    if isinstance(error, str):
        error = [error]
    if not isinstance(error, list) or not all(isinstance(e, str) and re.fullmatch(r"[A-Z][A-Z_]*", e) for e in error):
        raise ctx.fail(node.line_of("error"), f"error: expected registry error codes like UNAUTHORIZED, got {quoted(node.get('error'))}")
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
    if served_by is not None and served_by not in SERVED_BY:
        raise ctx.fail(node.line_of("served_by"), f"served_by: expected {' or '.join(SERVED_BY)}, got {quoted(served_by)}")
    upstream = counts(ctx, node.get("upstream", {}), node.line_of("upstream"), "upstream")
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
        within_s=within,
        success_rate=success_rate,
        loc=ctx.loc(line),
    )


def counts(ctx: Ctx, node: Any, line: int, key: str):
    """{endpoint kind: count or comparison} -> ((kind, Comparison), ...)."""
    if not isinstance(node, dict):
        raise ctx.fail(line, f"{key}: expected a mapping of endpoint kind to count")
    out = []
    for kind, value in node.items():
        kind_line = line_of(node, kind, line)
        if kind not in COUNTABLE:
            raise ctx.fail(
                kind_line,
                f"{key}: unknown endpoint kind {quoted(kind)}{did_you_mean(kind, COUNTABLE)} (expected one of: {', '.join(COUNTABLE)})",
            )
        out.append((str(kind), comparison(ctx, value, kind_line, f"{key}.{kind}")))
    return tuple(out)


def counts_schema() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": {k: COMPARISON for k in COUNTABLE}}
