"""A run on one time axis, from its journal: when each step ran, when each
fault was on, and when each upstream request started, by origin. The HTML
report draws it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chaos.journal import Journal

ORIGIN_LANES = ("mirror", "client", "push-registry", "unknown")


@dataclass(frozen=True)
class Span:
    label: str
    start_s: float  # seconds since the run started
    end_s: float
    css: str  # pass | fail | fault | ...
    title: str


@dataclass(frozen=True)
class Tick:
    lane: str
    at_s: float
    css: str  # ok | client-error | server-error | no-answer | faulted
    title: str


@dataclass(frozen=True)
class Timeline:
    seconds: float
    steps: tuple[Span, ...]
    faults: tuple[Span, ...]
    events: tuple[Tick, ...]
    lanes: tuple[str, ...]


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except (TypeError, ValueError):
        return None


def timeline(journal: Journal) -> Timeline:
    zero = _epoch(journal.started) or 0.0
    end = _epoch(journal.ended) or (zero + journal.seconds)

    def at(stamp: str | None, default: float) -> float:
        value = _epoch(stamp) if stamp else None
        return max(0.0, (value if value is not None else default) - zero)

    steps = tuple(
        Span(s.name, at(s.started, zero), max(at(s.ended, zero), at(s.started, zero)), "pass" if s.passed else "fail",
             f"{s.name}: {s.description}" + (f" -> {s.outcome.get('summary')}" if s.outcome.get("summary") else ""))
        for s in journal.steps
    )
    faults = tuple(
        Span(w.name, at(w.on, zero), at(w.off, end), "fault", f"fault {w.name} ({w.kind}) on at {w.on_step}"
             + (f", off at {w.off_step}" if w.off_step else ""))
        for w in journal.fault_windows
    )
    ticks = []
    for step in journal.steps:
        for event in step.events:
            ts = event.get("ts")
            if not isinstance(ts, (int, float)):
                continue
            lane = event.get("origin") or "unknown"
            ticks.append(Tick(lane if lane in ORIGIN_LANES else "unknown", max(0.0, ts - zero), _css(event), _title(event, step.name)))
    lanes = tuple(lane for lane in ORIGIN_LANES if any(t.lane == lane for t in ticks))
    total = max([journal.seconds, end - zero] + [s.end_s for s in steps] + [f.end_s for f in faults] + [t.at_s for t in ticks] + [0.001])
    return Timeline(total, steps, faults, tuple(ticks), lanes)


def _css(event: dict) -> str:
    status = event.get("status")
    if event.get("fault"):
        return "faulted"
    if status is None:
        return "no-answer"
    if status >= 500:
        return "server-error"
    if status >= 400 and not (status == 401 and event.get("kind") == "ping"):
        return "client-error"
    return "ok"


def _title(event: dict, step: str) -> str:
    what = f"{event.get('method') or ''} {event.get('host') or ''}{event.get('path') or ''}".strip()
    status = event.get("status")
    text = f"{step}: {what} -> {status if status is not None else 'no answer'}"
    if event.get("fault"):
        text += f" (fault {event['fault']})"
    return text
