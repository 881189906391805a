"""check: what the mirror holds (its catalog API and its storage folder) and
what the fault proxy saw, judged against earlier steps' snapshots."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chaos.errors import UsageError, quoted
from chaos.journal import Verdict
from chaos.language.expect import counts, counts_schema
from chaos.language.fields import Ctx, known_keys, optional_str, reference_value
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Counts, Step, Target
from chaos.language.schema_parts import NAMES, STEP_NAME, closed_object
from chaos.steps.context import StepContext
from chaos.steps.kind import StepKind
from chaos.steps.outcome import ActionResult, Outcome
from chaos.steps.registry import register
from chaos.steps.repeat import repeated
from chaos.steps.verdicts import (
    Evidence,
    attempt_verdicts,
    count_verdicts,
    judge_results,
)

if TYPE_CHECKING:
    from chaos.clients.mirror_probe import MirrorSnapshot

CHECK_KEYS = ("cached", "not_cached", "storage_unchanged_since", "catalog_unchanged_since", "storage_grew_since", "tap")


@dataclass(frozen=True)
class CheckAction:
    cached: tuple[str, ...] = ()
    not_cached: tuple[str, ...] = ()
    storage_unchanged_since: str | None = None
    catalog_unchanged_since: str | None = None
    storage_grew_since: str | None = None
    tap_since: str | None = None  # a step name, or "start"
    tap_counts: tuple[Counts, ...] = ()


def parse_check_body(ctx: Ctx, value: Any, line: int, what: str = "check") -> CheckAction:
    if not isinstance(value, MarkedDict) or not value:
        raise ctx.fail(line, f"{what}: expected a mapping with any of: {', '.join(CHECK_KEYS)}")
    known_keys(ctx, value, CHECK_KEYS, what)

    def repositories(key: str) -> tuple[str, ...]:
        items = value.get(key, [])
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            raise ctx.fail(value.line_of(key), f"{key}: expected a list of repositories")
        out = []
        for item in items:
            if not isinstance(item, str):
                raise ctx.fail(value.line_of(key), f"{key}: expected repository names, got {quoted(item)}")
            out.append(reference_value(ctx, item, value.line_of(key)).repository)
        return tuple(out)

    tap_since, tap_counts = None, ()
    if "tap" in value:
        tap = value["tap"]
        if not isinstance(tap, MarkedDict):
            raise ctx.fail(value.line_of("tap"), "tap: expected a mapping with since and counts")
        known_keys(ctx, tap, ("since", "counts"), "tap")
        tap_since = optional_str(ctx, tap, "since") or "start"
        if "counts" not in tap:
            raise ctx.fail(tap.line, "tap: missing required key 'counts'")
        tap_counts = counts(ctx, tap["counts"], tap.line_of("counts"), "tap.counts")
    return CheckAction(
        cached=repositories("cached"),
        not_cached=repositories("not_cached"),
        storage_unchanged_since=optional_str(ctx, value, "storage_unchanged_since"),
        catalog_unchanged_since=optional_str(ctx, value, "catalog_unchanged_since"),
        storage_grew_since=optional_str(ctx, value, "storage_grew_since"),
        tap_since=tap_since,
        tap_counts=tap_counts,
    )


def check_schema() -> dict[str, Any]:
    properties = {
        "cached": NAMES, "not_cached": NAMES,
        "storage_unchanged_since": STEP_NAME, "catalog_unchanged_since": STEP_NAME, "storage_grew_since": STEP_NAME,
        "tap": closed_object({"since": {"type": "string"}, "counts": counts_schema()}, ("counts",)),
    }
    assert set(properties) == set(CHECK_KEYS)
    return closed_object(properties)


def check_references(check: CheckAction) -> list[tuple[str, str]]:
    refs = [
        ("storage_unchanged_since", check.storage_unchanged_since),
        ("catalog_unchanged_since", check.catalog_unchanged_since),
        ("storage_grew_since", check.storage_grew_since),
        ("tap.since", None if check.tap_since == "start" else check.tap_since),
    ]
    return [(key, name) for key, name in refs if name is not None]


def check_target_problem(check: CheckAction, target: Target) -> str | None:
    if target.storage is None and (check.storage_unchanged_since or check.storage_grew_since):
        return "storage checks need target.storage (the mirror's storage folder)"
    return None


def compared_steps(check: CheckAction) -> tuple[str, ...]:
    return tuple(n for n in (check.storage_unchanged_since, check.catalog_unchanged_since, check.storage_grew_since) if n)


def judge_check(check: CheckAction, snap: MirrorSnapshot, ctx: StepContext) -> list[Verdict]:
    """The check's verdicts on the mirror as it is now (snap) and earlier steps' snapshots."""
    verdicts = []
    if snap.catalog_error and (check.cached or check.not_cached or check.catalog_unchanged_since):
        verdicts.append(Verdict("mirror answers its catalog API", True, snap.catalog_error, False))
    # Judged on the sources that could be looked at: a target without
    # target.storage by its catalog alone; an unreadable catalog failed above,
    # and with nothing else to look at there is no verdict to give.
    for repo in check.cached:
        if actual := snap.holds(repo):
            verdicts.append(Verdict(f"cached {repo}", dict.fromkeys(actual, True), actual, all(actual.values())))
    for repo in check.not_cached:
        if actual := snap.holds(repo):
            verdicts.append(Verdict(f"not cached {repo}", dict.fromkeys(actual, False), actual, not any(actual.values())))
    if check.storage_unchanged_since:
        before = ctx.snapshot_of(check.storage_unchanged_since).storage_bytes
        verdicts.append(Verdict(f"storage bytes unchanged since {check.storage_unchanged_since}", before, snap.storage_bytes, before == snap.storage_bytes))
    if check.storage_grew_since:
        before = ctx.snapshot_of(check.storage_grew_since).storage_bytes
        verdicts.append(Verdict(f"storage bytes grew since {check.storage_grew_since}", f"> {before}", snap.storage_bytes, snap.storage_bytes > before))
    if check.catalog_unchanged_since:
        before = ctx.snapshot_of(check.catalog_unchanged_since).catalog
        verdicts.append(Verdict(f"catalog unchanged since {check.catalog_unchanged_since}", list(before), list(snap.catalog), before == snap.catalog))
    if check.tap_counts:
        verdicts += count_verdicts(f"tap since {check.tap_since}", check.tap_counts, ctx.events_since(check.tap_since))
    return verdicts


def check_once(check: CheckAction, step: Step, ctx: StepContext) -> tuple[ActionResult, list[Verdict]]:
    """Look at the mirror once: one attempt and its verdicts."""
    started = time.monotonic()
    snap = ctx.snapshot(settle=True)
    if snap is None:
        raise UsageError(f"{step.loc}: check needs a mirror to look at")
    verdicts = judge_check(check, snap, ctx)
    result = ActionResult(ok=all(v.ok for v in verdicts), seconds=time.monotonic() - started, facts={"mirror": snap.to_dict()})
    if step.expect.within_s is not None:
        verdicts += [v for v in attempt_verdicts(step.expect, result, Evidence()) if v.what == "within"]
    return result, verdicts


@register
class Check(StepKind):
    name = "check"
    expect_keys = ("ok", "within", "success_rate")
    repeatable = True
    settles_mirror = True

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> CheckAction:
        return parse_check_body(ctx, node["check"], line)

    def schema(self) -> dict[str, Any]:
        return check_schema()

    def describe(self, action: CheckAction) -> str:
        return "check mirror"

    def inputs(self, action: CheckAction) -> dict[str, Any]:
        out: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(action).items() if v and k != "tap_counts"}
        if action.tap_counts:
            out["tap_counts"] = [{**({"filter": spec.label} if spec.label else {}), **{k: str(c) for k, c in spec.wanted}}
                                 for spec in action.tap_counts]
        return out

    def references(self, action: CheckAction) -> list[tuple[str, str]]:
        return check_references(action)

    def target_problem(self, action: CheckAction, target: Target) -> str | None:
        return check_target_problem(action, target)

    def settled_snapshots(self, action: CheckAction) -> tuple[str, ...]:
        return compared_steps(action)

    def run(self, step: Step, action: CheckAction, ctx: StepContext) -> Outcome:
        if not step.repeat:
            result, verdicts = check_once(action, step, ctx)
            return Outcome.of(self.name, [result], verdicts=tuple(verdicts))
        # Repeated checks: each pass or fail is an attempt, judged for success_rate.
        results = repeated(step.repeat, ctx.deadline, ctx.cancelled, lambda: [check_once(action, step, ctx)[0]])
        return Outcome.of(self.name, results, repeats_wanted=step.repeat.times)

    def judge(self, step: Step, outcome: Outcome, evidence: Evidence) -> list[Verdict]:
        if step.repeat:
            return judge_results(step.expect, outcome, Evidence(digests=evidence.digests))
        return list(outcome.verdicts)

    def summary(self, outcome: Outcome) -> str:
        if outcome.repeats_wanted is not None:
            return f"{sum(1 for r in outcome.results if r.ok)}/{len(outcome.results)} ok"
        return ""
