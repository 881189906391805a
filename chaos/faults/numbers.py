"""Bounds every fault spec's plain data obeys, checked before anything else reads it.

A fault spec arrives from the network (the control API), a file or a scenario.
Python's json turns a 400-digit integer into an int that float() cannot hold
(OverflowError) and nests lists as deep as the text does (RecursionError when
anything walks them). So numbers are checked here for finiteness and size, and
nesting for depth, with errors that name the field, before the kinds see them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_NUMBER = 2**53
"""The largest magnitude of any number in a spec: every integer up to it is exact
as a float (and in JavaScript), and no parameter needs more."""

MAX_DEPTH = 8
"""How deep a spec may nest: the deepest real field (trigger.flap.period_s) is at 3."""


class NumberProblem(ValueError):
    """What is wrong with a number, for a message that names its field."""


def plain_number(value: Any) -> int | float:
    """`value` when it is a finite int or float (not a bool) of magnitude at most
    MAX_NUMBER; NumberProblem saying what is wrong otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NumberProblem(f"expected a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise NumberProblem(f"must be finite, got {value!r}")
    if abs(value) > MAX_NUMBER:
        # Never repr() it: a huge int's text can be thousands of digits (or refuse conversion).
        raise NumberProblem(f"must be at most {MAX_NUMBER} in magnitude")
    return value


def too_deep(data: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """The dotted path of the first value nested deeper than `max_depth`, or None.

    Iterative, so it cannot itself run out of stack on hostile input.
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, Mapping):
            children = [(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(value)]
        else:
            continue
        if depth >= max_depth:
            return path or "fault"
        stack.extend((child, child_path, depth + 1) for child, child_path in children)
    return None
