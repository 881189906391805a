"""Typed readers for marked YAML nodes: each failure is `file:line: what is wrong`."""

from __future__ import annotations

import difflib
import re
from typing import Any

from chaos.errors import BadReference, ScenarioError, quoted
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Comparison
from chaos.vocab.reference import ImageReference, parse_reference
from chaos.vocab.units import parse_duration, parse_size


class Ctx:
    """Where we are in the file, for messages."""

    def __init__(self, filename: str):
        self.filename = filename

    def fail(self, line: int, message: str) -> ScenarioError:
        return ScenarioError(f"{self.filename}:{line}: {message}")

    def loc(self, line: int) -> str:
        return f"{self.filename}:{line}"


def line_of(node: Any, key: Any, default: int) -> int:
    return node.line_of(key) if isinstance(node, MarkedDict) else default


def known_keys(ctx: Ctx, node: MarkedDict, allowed: tuple[str, ...], what: str) -> None:
    for key in node:
        if key not in allowed:
            raise ctx.fail(
                node.line_of(key),
                f"unknown key {quoted(key)} in {what}{did_you_mean(str(key), allowed)} (expected one of: {', '.join(allowed)})",
            )


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f"; did you mean {quoted(close[0])}?" if close else ""


def required_str(ctx: Ctx, node: MarkedDict, key: str, what: str) -> str:
    if key not in node:
        raise ctx.fail(node.line, f"{what}: missing required key {quoted(key)}")
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise ctx.fail(node.line_of(key), f"{key}: expected a non-empty text, got {quoted(value)}")
    return str(value)


def optional_str(ctx: Ctx, node: MarkedDict, key: str) -> str | None:
    if key not in node or node[key] is None:
        return None
    value = node[key]
    if not isinstance(value, str):
        raise ctx.fail(node.line_of(key), f"{key}: expected a text, got {quoted(value)}")
    return str(value)


def optional_bool(ctx: Ctx, node: MarkedDict, key: str) -> bool | None:
    if key not in node:
        return None
    value = node[key]
    if not isinstance(value, bool):
        raise ctx.fail(node.line_of(key), f"{key}: expected true or false, got {quoted(value)}")
    return value


def whole_number(ctx: Ctx, value: Any, line: int, key: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ctx.fail(line, f"{key}: expected a whole number from {low} to {high}, got {quoted(value)}")
    return value


def a_list(ctx: Ctx, node: MarkedDict, key: str) -> list:
    value = node.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(node.line_of(key), f"{key}: expected a list")
    return value


def reference(ctx: Ctx, node: MarkedDict, key: str) -> ImageReference:
    if key not in node:
        raise ctx.fail(node.line, f"missing required key {quoted(key)}")
    value = node[key]
    if not isinstance(value, str):
        raise ctx.fail(node.line_of(key), f"{key}: expected an image reference, got {quoted(value)}")
    return reference_value(ctx, value, node.line_of(key))


def reference_value(ctx: Ctx, value: str, line: int) -> ImageReference:
    try:
        return parse_reference(str(value))
    except BadReference as exc:
        raise ctx.fail(line, str(exc)) from None


def size(ctx: Ctx, node: MarkedDict, key: str, default: int) -> int:
    if key not in node:
        return default
    try:
        value = parse_size(node[key])
    except (ValueError, TypeError) as exc:
        raise ctx.fail(node.line_of(key), f"{key}: {exc}") from None
    if value <= 0 or value > 4 * 1024**3:
        raise ctx.fail(node.line_of(key), f"{key}: expected a size between 1 byte and 4 GiB, got {quoted(node[key])}")
    return value


def duration(ctx: Ctx, value: Any, line: int, key: str, *, maximum_s: float = 3600, allow_zero: bool = False) -> float:
    """`30s`, `500ms`, `2m`, or a number of seconds."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ctx.fail(line, f"{key}: expected a duration like 30s, 500ms or 2m, got {quoted(value)}") from None
    low_ok = seconds >= 0 if allow_zero else seconds > 0
    if not low_ok or seconds > maximum_s:
        raise ctx.fail(line, f"{key}: expected a duration {'from 0' if allow_zero else 'above 0'} up to {maximum_s:g}s, got {quoted(value)}")
    return seconds


_COMPARISON = re.compile(r"^\s*(==|>=|<=|!=|>|<)?\s*(\d+(?:\.\d+)?)\s*$")


def comparison(ctx: Ctx, value: Any, line: int, key: str) -> Comparison:
    """`3` (exactly 3) or `">= 0.95"`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ctx.fail(line, f"{key}: expected a count >= 0, got {quoted(value)}")
        return Comparison("==", float(value))
    if isinstance(value, str) and (m := _COMPARISON.match(value)):
        return Comparison(m.group(1) or "==", float(m.group(2)))
    raise ctx.fail(line, f"{key}: expected a number or a comparison like '>= 3', got {quoted(value)}")


def plain(value: Any) -> Any:
    """Marked containers and texts -> plain dicts, lists and str (for JSON and the control API)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
