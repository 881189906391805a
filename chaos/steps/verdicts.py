"""Expectations judged, the same way for every step kind: one verdict per
thing the scenario asked for, with what was expected and what happened.

A step may have several attempts (several images, or `repeat`). Without
`success_rate`, every attempt must meet every per-attempt expectation; with
it, an attempt counts as a success when it meets them all, and the rate of
successes is judged instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from chaos.journal import Verdict
from chaos.language.model import Counts, Expectation, MirrorAnswer

if TYPE_CHECKING:
    from chaos.steps.outcome import Outcome


@dataclass(frozen=True)
class Evidence:
    """What a step's verdicts may look at besides its outcome."""

    events: Sequence[Mapping[str, Any]] = ()  # the tap's upstream events during the step
    digests: Mapping[str, str | None] = field(default_factory=dict)  # earlier steps' first digests


def upstream_counts(events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Requests per endpoint kind, plus blob body bytes that came from upstream."""
    counts: dict[str, int] = {"requests": len(events), "blob_bytes": 0}
    for event in events:
        kind = event.get("kind") or "other"
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "blob" and (event.get("status") or 0) < 300:
            counts["blob_bytes"] += int(event.get("bytes") or 0)
    return counts


def count_verdicts(prefix: str, wanted: tuple[Counts, ...], events: Sequence[Mapping[str, Any]]) -> list[Verdict]:
    verdicts = []
    for spec in wanted:
        counts = upstream_counts([e for e in events if spec.admits(e)])
        for kind, comparison in spec.wanted:
            actual = counts.get(kind, 0)
            verdicts.append(Verdict(f"{prefix}{spec.label}.{kind}", str(comparison), actual, comparison.holds(actual)))
    return verdicts


def mirror_verdicts(expect: MirrorAnswer, attempt: Any) -> list[Verdict]:
    """What the mirror itself answered (the pull's mirror attempt), whatever came after it."""
    answer = next((a for a in getattr(attempt, "attempts", ()) if a.endpoint == "mirror"), None)
    verdicts = []
    if expect.ok is not None or expect.error or expect.message is not None:
        ok_wanted = expect.ok if expect.ok is not None else False
        actual = None if answer is None else answer.ok
        verdicts.append(Verdict("mirror.ok", ok_wanted, actual, actual is not None and actual == ok_wanted))
    if expect.status is not None:
        status = answer.status if answer else None
        verdicts.append(Verdict("mirror.status", expect.status, status, status == expect.status))
    if expect.error:
        code = answer.error_code if answer else None
        verdicts.append(Verdict("mirror.error", list(expect.error), code, code in expect.error))
    if expect.message is not None:
        message = (answer.message or "") if answer else ""
        verdicts.append(Verdict("mirror.message", expect.message.pattern, message, bool(expect.message.search(message))))
    return verdicts


def attempt_verdicts(expect: Expectation, attempt: Any, evidence: Evidence) -> list[Verdict]:
    """Expectations judged on one attempt (a PullResult, PushResult, ActionResult or Outcome)."""
    verdicts: list[Verdict] = []
    ok = bool(attempt.ok)
    expected_ok = expect.ok
    if expected_ok is None and (expect.error or expect.message):
        expected_ok = False  # asking for an error implies the step must fail
    if expected_ok is None:
        expected_ok = True  # otherwise it must at least succeed
    verdicts.append(Verdict("ok", expected_ok, ok, ok == expected_ok))
    if expect.error:
        code = attempt.error_code
        verdicts.append(Verdict("error", list(expect.error), code, code in expect.error))
    if expect.message is not None:
        message = attempt.message or ""
        verdicts.append(Verdict("message", expect.message.pattern, message, bool(expect.message.search(message))))
    served = getattr(attempt, "served_by", None)
    if expect.served_by is not None:
        verdicts.append(Verdict("served_by", expect.served_by, served, served == expect.served_by))
    if expect.from_cache is not None:
        blob_bytes = upstream_counts(evidence.events)["blob_bytes"]
        cached = ok and served == "mirror" and blob_bytes == 0
        actual = {"served_by": served, "upstream_blob_bytes": blob_bytes}
        verdicts.append(Verdict("from_cache", expect.from_cache, actual, cached == expect.from_cache))
    if expect.same_digest_as is not None:
        wanted = evidence.digests.get(expect.same_digest_as)
        got = attempt.digest
        verdicts.append(Verdict(f"same_digest_as {expect.same_digest_as}", wanted, got, wanted is not None and got == wanted))
    if not expect.mirror.empty:
        verdicts += mirror_verdicts(expect.mirror, attempt)
    if expect.within_s is not None:
        seconds = round(float(attempt.seconds or 0.0), 3)
        verdicts.append(Verdict("within", f"<= {expect.within_s:g}s", f"{seconds:g}s", seconds <= expect.within_s))
    return verdicts


def judge_results(expect: Expectation, outcome: Outcome, evidence: Evidence) -> list[Verdict]:
    """Verdicts for a whole step from all its attempts and the upstream events it caused."""
    attempts = outcome.attempts
    per_attempt = [attempt_verdicts(expect, attempt, evidence) for attempt in attempts]
    if expect.success_rate is not None:
        successes = sum(all(v.ok for v in verdicts) for verdicts in per_attempt)
        rate = successes / len(attempts)
        verdicts = [Verdict("success_rate", str(expect.success_rate), round(rate, 4), expect.success_rate.holds(rate))]
    elif len(attempts) == 1:
        verdicts = per_attempt[0]
    else:
        verdicts = _all_attempts(per_attempt)
    verdicts += count_verdicts("upstream", expect.upstream, evidence.events)
    if outcome.repeats_wanted is not None and len(outcome.results) < outcome.repeats_wanted:
        verdicts.append(Verdict("repeats", outcome.repeats_wanted, len(outcome.results), False))
    return verdicts


def _all_attempts(per_attempt: list[list[Verdict]]) -> list[Verdict]:
    """One verdict per expectation: holds when it held for every attempt; the
    actual value lists what each attempt gave."""
    merged = []
    for index, first in enumerate(per_attempt[0]):
        column = [verdicts[index] for verdicts in per_attempt]
        merged.append(replace(first, actual=[v.actual for v in column], ok=all(v.ok for v in column)))
    return merged


def expectation_texts(expect: Expectation) -> list[str]:
    """The expectations as written, one text each, for the journal and reports."""
    out = []
    if expect.ok is not None:
        out.append(f"ok: {str(expect.ok).lower()}")
    if expect.error:
        out.append(f"error: {' | '.join(expect.error)}")
    if expect.message is not None:
        out.append(f"message: /{expect.message.pattern}/")
    if expect.served_by is not None:
        out.append(f"served_by: {expect.served_by}")
    if expect.from_cache is not None:
        out.append(f"from_cache: {str(expect.from_cache).lower()}")
    if expect.same_digest_as is not None:
        out.append(f"same_digest_as: {expect.same_digest_as}")
    mirror = expect.mirror
    if not mirror.empty:
        said = ([f"ok: {str(mirror.ok).lower()}"] if mirror.ok is not None else []) + (
            [f"status: {mirror.status}"] if mirror.status is not None else []) + (
            [f"error: {' | '.join(mirror.error)}"] if mirror.error else []) + (
            [f"message: /{mirror.message.pattern}/"] if mirror.message is not None else [])
        out.append(f"mirror: {{{', '.join(said)}}}")
    for spec in expect.upstream:
        for kind, comparison in spec.wanted:
            out.append(f"upstream{spec.label}.{kind} {comparison}")
    if expect.within_s is not None:
        out.append(f"within: {expect.within_s:g}s")
    if expect.success_rate is not None:
        out.append(f"success_rate {expect.success_rate}")
    return out
