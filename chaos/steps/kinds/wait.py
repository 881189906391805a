"""wait: a pause, or `{until: CHECK, interval}`: poll a check until it holds
(within the step's deadline)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chaos.journal import Verdict
from chaos.language.fields import Ctx, duration, known_keys
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Step, Target
from chaos.language.schema_parts import DURATION, closed_object
from chaos.steps.context import StepContext
from chaos.steps.kind import StepKind
from chaos.steps.kinds.check import (
    CheckAction,
    check_once,
    check_references,
    check_schema,
    check_target_problem,
    compared_steps,
    parse_check_body,
)
from chaos.steps.outcome import ActionResult, Outcome
from chaos.steps.registry import register
from chaos.steps.verdicts import Evidence

MARGIN_S = 0.5


@dataclass(frozen=True)
class WaitAction:
    seconds: float | None = None  # a plain pause
    until: CheckAction | None = None  # or: poll this check until it holds
    interval_s: float = 0.5


@register
class Wait(StepKind):
    name = "wait"

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> WaitAction:
        value = node["wait"]
        if not isinstance(value, MarkedDict):
            return WaitAction(seconds=duration(ctx, value, line, "wait"))
        known_keys(ctx, value, ("until", "interval"), "wait")
        if "until" not in value:
            raise ctx.fail(line, "wait: expected a duration, or a mapping with until (a check) and interval")
        until = parse_check_body(ctx, value["until"], value.line_of("until"), "wait.until")
        interval = duration(ctx, value.get("interval", 0.5), value.line_of("interval"), "wait.interval", maximum_s=600)
        return WaitAction(until=until, interval_s=interval)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [DURATION, closed_object({"until": check_schema(), "interval": DURATION}, ("until",))]}

    def describe(self, action: WaitAction) -> str:
        return f"wait {action.seconds:g}s" if action.seconds is not None else "wait until check holds"

    def inputs(self, action: WaitAction) -> dict[str, Any]:
        return {"seconds": action.seconds, "until": bool(action.until), "interval_s": action.interval_s}

    def references(self, action: WaitAction) -> list[tuple[str, str]]:
        return check_references(action.until) if action.until else []

    def target_problem(self, action: WaitAction, target: Target) -> str | None:
        return check_target_problem(action.until, target) if action.until else None

    def settled_snapshots(self, action: WaitAction) -> tuple[str, ...]:
        return compared_steps(action.until) if action.until else ()

    def run(self, step: Step, action: WaitAction, ctx: StepContext) -> Outcome:
        started = time.monotonic()
        if action.until is None:
            ctx.cancelled.wait(max(0.0, min(action.seconds, ctx.deadline - started - MARGIN_S)))
            waited = time.monotonic() - started
            verdict = Verdict("waited", f"{action.seconds:g}s", f"{waited:.2f}s", waited >= action.seconds - 0.05)
            return Outcome.of(self.name, [ActionResult(ok=True, seconds=waited)], verdicts=(verdict,))
        polls = 0
        while True:
            polls += 1
            result, verdicts = check_once(action.until, step, ctx)
            if result.ok or time.monotonic() + action.interval_s > ctx.deadline - MARGIN_S or ctx.cancelled.is_set():
                break
            ctx.cancelled.wait(action.interval_s)
        waited = time.monotonic() - started
        verdict = Verdict("until holds", True, {"held": result.ok, "polls": polls, "seconds": round(waited, 2),
                                                "failing": [v.what for v in verdicts if not v.ok]}, result.ok)
        final = ActionResult(ok=result.ok, seconds=waited, facts={**result.facts, "polls": polls})
        return Outcome.of(self.name, [final], verdicts=(verdict,))

    def judge(self, step: Step, outcome: Outcome, evidence: Evidence) -> list[Verdict]:
        return list(outcome.verdicts)
