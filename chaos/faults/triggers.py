"""When a matching request is hit: the `trigger` section of a fault spec, once for every kind.

A fault first *matches* a request (host, role, endpoint, method, repository,
client: base.Match); its trigger then decides whether it *fires* for it. Every
field is optional; a trigger with none fires for every matching request.

    probability    0..1, the chance to fire; drawn from the fault's own random
                   generator seeded with `seed` (chosen and shown when omitted),
                   one draw per matching request, so the same seed and the same
                   sequence of matching requests give the same decisions
    after          skip the first N matching requests
    every          then fire on every Nth of them (N, 2N, ... after `after`)
    first          fire at most N times in all (with no other field: the first
                   N matching requests)
    start_after_s  seconds after the fault was added before it can fire
    duration_s     seconds it can fire for, from start_after_s
    flap           {period_s, down_fraction}: from start_after_s, fire during the
                   first down_fraction of every period_s ("down"), not the rest

A request is hit when all of them agree. Counters (`matched`, `fired`) count
every matching request, whatever the time, and are per fault; replacing a fault
(PUT) starts them and its time window again.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chaos.errors import quoted
from chaos.faults.numbers import NumberProblem, plain_number

_FIELDS = ("probability", "seed", "first", "every", "after", "start_after_s", "duration_s", "flap")
_FLAP_FIELDS = ("period_s", "down_fraction")


class TriggerError(ValueError):
    """A bad trigger value; `field` names it ("trigger.probability")."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


@dataclass(frozen=True)
class Flap:
    period_s: float
    down_fraction: float  # of each period, the fault fires during the first this much

    def is_down(self, since_start_s: float) -> bool:
        return since_start_s % self.period_s < self.down_fraction * self.period_s


@dataclass(frozen=True)
class Trigger:
    probability: float | None = None
    seed: int | None = None
    first: int | None = None
    every: int | None = None
    after: int = 0
    start_after_s: float = 0.0
    duration_s: float | None = None
    flap: Flap | None = None

    @property
    def picks_requests(self) -> bool:
        """Whether it fires for some matching requests and not the ones beside
        them (a chance, the first N, every Nth), rather than for all of them
        from some point or in some time window."""
        return self.probability is not None or self.first is not None or self.every is not None

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that were set, so a GET shows what a user wrote."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if name == "flap" and value is not None:
                out[name] = {"period_s": value.period_s, "down_fraction": value.down_fraction}
            elif value is not None and not (name in ("after", "start_after_s") and value == 0):
                out[name] = value
        return out


def parse_trigger(raw: Any) -> Trigger:
    """Validate the `trigger` mapping; raises TriggerError naming the field."""
    if raw is None:
        return Trigger()
    if not isinstance(raw, Mapping):
        raise TriggerError("trigger", f"expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _FIELDS:
            raise TriggerError(f"trigger.{key}", f"unknown field (expected: {', '.join(_FIELDS)})")
    probability = raw.get("probability")
    if probability is not None:
        if not _is_number(probability) or not 0 <= probability <= 1:
            raise TriggerError(
                "trigger.probability", f"expected a number from 0 to 1, got {quoted(probability)}"
            )
        probability = float(probability)
    seed = raw.get("seed")
    if seed is not None:
        if probability is None:
            raise TriggerError("trigger.seed", "only used with trigger.probability")
        if not _is_whole(seed) or seed < 0:
            raise TriggerError("trigger.seed", f"expected a whole number >= 0, got {quoted(seed)}")
        seed = int(seed)
    elif probability is not None:
        # Chosen here, not at random per request, so GET /faults shows the seed
        # that reproduces this run.
        seed = secrets.randbits(32)
    flap = _parse_flap(raw.get("flap"))
    return Trigger(
        probability=probability,
        seed=seed,
        first=_count(raw, "first", minimum=1),
        every=_count(raw, "every", minimum=1),
        after=_count(raw, "after", minimum=0) or 0,
        start_after_s=_seconds(raw, "start_after_s", positive=False) or 0.0,
        duration_s=_seconds(raw, "duration_s", positive=True),
        flap=flap,
    )


def _parse_flap(raw: Any) -> Flap | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise TriggerError("trigger.flap", f"expected a mapping with period_s and down_fraction, got {quoted(raw)}")
    for key in raw:
        if key not in _FLAP_FIELDS:
            raise TriggerError(f"trigger.flap.{key}", f"unknown field (expected: {', '.join(_FLAP_FIELDS)})")
    period = raw.get("period_s")
    if not _is_number(period) or period <= 0:
        raise TriggerError("trigger.flap.period_s", f"expected a number of seconds > 0, got {quoted(period)}")
    fraction = raw.get("down_fraction")
    if not _is_number(fraction) or not 0 < fraction <= 1:
        # 0 would be a fault that can never fire: reject it rather than silently do nothing.
        raise TriggerError(
            "trigger.flap.down_fraction", f"expected a number above 0 and at most 1, got {quoted(fraction)}"
        )
    return Flap(float(period), float(fraction))


def _count(raw: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if not _is_whole(value) or value < minimum:
        raise TriggerError(f"trigger.{name}", f"expected a whole number >= {minimum}, got {quoted(value)}")
    return int(value)


def _seconds(raw: Mapping[str, Any], name: str, positive: bool) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if not _is_number(value) or value < 0 or (positive and value == 0):
        wanted = "> 0" if positive else ">= 0"
        raise TriggerError(f"trigger.{name}", f"expected a number of seconds {wanted}, got {quoted(value)}")
    return float(value)


def _is_number(value: Any) -> bool:
    """A finite number of bounded size (numbers.py): safe to compare and convert."""
    try:
        plain_number(value)
    except NumberProblem:
        return False
    return True


def _is_whole(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


class TriggerState:
    """One fault's decisions and counters. Not thread-safe: proxy hooks run on one loop."""

    def __init__(self, trigger: Trigger, added_at: float):
        self.trigger = trigger
        self.added_at = added_at
        self.matched = 0
        self.fired = 0
        self._random = random.Random(trigger.seed) if trigger.probability is not None else None

    def decide(self, now: float) -> bool:
        """Count one matching request at time `now` and say whether the fault fires for it."""
        t = self.trigger
        self.matched += 1
        # Draw for every matching request, even one the other fields rule out, so
        # the k-th request's draw depends only on the seed and k.
        draw = self._random.random() if self._random is not None else 0.0
        since_start = now - self.added_at - t.start_after_s
        if since_start < 0:
            return False
        if t.duration_s is not None and since_start >= t.duration_s:
            return False
        if t.flap is not None and not t.flap.is_down(since_start):
            return False
        if self.matched <= t.after:
            return False
        if t.every is not None and (self.matched - t.after) % t.every:
            return False
        if t.probability is not None and draw >= t.probability:
            return False
        if t.first is not None and self.fired >= t.first:
            return False
        self.fired += 1
        return True
