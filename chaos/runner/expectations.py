"""Turn a step's outcome into verdicts: one per thing the scenario asked for,
each with what was expected and what actually happened."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from chaos.scenario.model import Expectation


@dataclass(frozen=True)
class Verdict:
    what: str
    expected: Any
    actual: Any
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.what}: expected {self.expected!r}, got {self.actual!r}"


def upstream_counts(events: list[dict]) -> dict[str, int]:
    """Requests per endpoint kind, plus blob body bytes that came from upstream."""
    counts: dict[str, int] = {"requests": len(events), "blob_bytes": 0}
    for event in events:
        kind = event.get("kind") or "other"
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "blob" and (event.get("status") or 0) < 400:
            counts["blob_bytes"] += int(event.get("bytes") or 0)
    return counts


def evaluate(
    expect: Expectation,
    outcome: dict,
    events: list[dict],
    digests_by_step: dict[str, str | None],
) -> list[Verdict]:
    """outcome is a PullResult/PushResult as a dict (ok, error_code, message, served_by, digest)."""
    verdicts: list[Verdict] = []
    ok = bool(outcome.get("ok"))
    expected_ok = expect.ok
    if expected_ok is None and (expect.error or expect.message):
        expected_ok = False  # asking for an error implies the step must fail
    if expected_ok is None and expect.empty:
        expected_ok = True  # a step with no expectation must at least succeed
    if expected_ok is not None:
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
    counts = upstream_counts(events)
    if expect.from_cache is not None:
        cached = ok and outcome.get("served_by") == "mirror" and counts["blob_bytes"] == 0
        actual = {"served_by": outcome.get("served_by"), "upstream_blob_bytes": counts["blob_bytes"]}
        verdicts.append(Verdict("from_cache", expect.from_cache, actual, cached == expect.from_cache))
    if expect.same_digest_as is not None:
        wanted = digests_by_step.get(expect.same_digest_as)
        got = outcome.get("digest")
        verdicts.append(Verdict(f"same_digest_as {expect.same_digest_as}", wanted, got, wanted is not None and got == wanted))
    for kind, count in expect.upstream:
        actual = counts.get(kind, 0)
        verdicts.append(Verdict(f"upstream.{kind}", count, actual, actual == count))
    return verdicts
