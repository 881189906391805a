"""Turn a step's outcome into verdicts: one per thing the scenario asked for,
each with what was expected and what actually happened.

A step may have several attempts (several images, or `repeat`). Without
`success_rate`, every attempt must meet every per-attempt expectation; with
it, an attempt counts as a success when it meets them all, and the rate of
successes is judged instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from chaos.scenario.model import Comparison, Expectation


@dataclass(frozen=True)
class Verdict:
    what: str
    expected: Any
    actual: Any
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)


def upstream_counts(events: list[dict]) -> dict[str, int]:
    """Requests per endpoint kind, plus blob body bytes that came from upstream."""
    counts: dict[str, int] = {"requests": len(events), "blob_bytes": 0}
    for event in events:
        kind = event.get("kind") or "other"
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "blob" and (event.get("status") or 0) < 300:
            counts["blob_bytes"] += int(event.get("bytes") or 0)
    return counts


def count_verdicts(prefix: str, wanted: tuple[tuple[str, Comparison], ...], events: list[dict]) -> list[Verdict]:
    counts = upstream_counts(events)
    return [Verdict(f"{prefix}.{kind}", str(comparison), counts.get(kind, 0), comparison.holds(counts.get(kind, 0))) for kind, comparison in wanted]


def attempt_verdicts(expect: Expectation, outcome: dict, events: list[dict], digests_by_step: dict[str, str | None]) -> list[Verdict]:
    """Expectations judged on one result (a PullResult or PushResult as a dict)."""
    verdicts: list[Verdict] = []
    ok = bool(outcome.get("ok"))
    expected_ok = expect.ok
    if expected_ok is None and (expect.error or expect.message):
        expected_ok = False  # asking for an error implies the step must fail
    if expected_ok is None:
        expected_ok = True  # otherwise it must at least succeed
    verdicts.append(Verdict("ok", expected_ok, ok, ok == expected_ok))
    if expect.error:
        code = outcome.get("error_code")
        verdicts.append(Verdict("error", list(expect.error), code, code in expect.error))
    if expect.message is not None:
        message = outcome.get("message") or ""
        verdicts.append(Verdict("message", expect.message.pattern, message, bool(expect.message.search(message))))
    if expect.served_by is not None:
        served = outcome.get("served_by")
        verdicts.append(Verdict("served_by", expect.served_by, served, served == expect.served_by))
    if expect.from_cache is not None:
        blob_bytes = upstream_counts(events)["blob_bytes"]
        cached = ok and outcome.get("served_by") == "mirror" and blob_bytes == 0
        actual = {"served_by": outcome.get("served_by"), "upstream_blob_bytes": blob_bytes}
        verdicts.append(Verdict("from_cache", expect.from_cache, actual, cached == expect.from_cache))
    if expect.same_digest_as is not None:
        wanted = digests_by_step.get(expect.same_digest_as)
        got = outcome.get("digest")
        verdicts.append(Verdict(f"same_digest_as {expect.same_digest_as}", wanted, got, wanted is not None and got == wanted))
    if expect.within_s is not None:
        seconds = round(float(outcome.get("seconds") or 0.0), 3)
        verdicts.append(Verdict("within", f"<= {expect.within_s:g}s", f"{seconds:g}s", seconds <= expect.within_s))
    return verdicts


def evaluate(expect: Expectation, outcomes: list[dict], events: list[dict], digests_by_step: dict[str, str | None]) -> list[Verdict]:
    """Verdicts for a whole step from all its attempts and the upstream events it caused."""
    if not outcomes:
        return [Verdict("attempts", ">= 1", 0, False)]
    per_attempt = [attempt_verdicts(expect, outcome, events, digests_by_step) for outcome in outcomes]
    if expect.success_rate is not None:
        successes = sum(all(v.ok for v in verdicts) for verdicts in per_attempt)
        rate = successes / len(outcomes)
        verdicts = [Verdict("success_rate", str(expect.success_rate), round(rate, 4), expect.success_rate.holds(rate))]
    elif len(outcomes) == 1:
        verdicts = per_attempt[0]
    else:
        verdicts = _all_attempts(per_attempt)
    return verdicts + count_verdicts("upstream", expect.upstream, events)


def _all_attempts(per_attempt: list[list[Verdict]]) -> list[Verdict]:
    """One verdict per expectation: holds when it held for every attempt; the
    actual value lists what each attempt gave."""
    merged = []
    for index, first in enumerate(per_attempt[0]):
        column = [verdicts[index] for verdicts in per_attempt]
        merged.append(replace(first, actual=[v.actual for v in column], ok=all(v.ok for v in column)))
    return merged
