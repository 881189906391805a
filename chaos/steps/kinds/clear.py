"""clear: switch named faults off, or every fault (`clear: all`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaos.journal import Verdict
from chaos.language.fields import Ctx
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Step
from chaos.language.schema_parts import NAMES
from chaos.steps.context import StepContext
from chaos.steps.kind import StepKind
from chaos.steps.outcome import ActionResult, Outcome
from chaos.steps.registry import register
from chaos.steps.verdicts import Evidence


@dataclass(frozen=True)
class ClearAction:
    names: tuple[str, ...] = ()  # empty: every fault


@register
class Clear(StepKind):
    name = "clear"
    expect_keys = ("ok",)

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> ClearAction:
        value = node["clear"]
        if value in ("all", None, True):
            return ClearAction()
        if isinstance(value, str):
            return ClearAction(names=(str(value),))
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return ClearAction(names=tuple(str(v) for v in value))
        raise ctx.fail(line, "clear: expected a fault name, a list of names, or 'all'")

    def schema(self) -> dict[str, Any]:
        return NAMES

    def describe(self, action: ClearAction) -> str:
        return "clear " + (", ".join(action.names) or "all faults")

    def inputs(self, action: ClearAction) -> dict[str, Any]:
        return {"faults": list(action.names) or "all"}

    def faults_cleared(self, action: ClearAction) -> tuple[str, ...]:
        return action.names

    def run(self, step: Step, action: ClearAction, ctx: StepContext) -> Outcome:
        already_off = []
        if action.names:
            names = action.names
            for name in names:
                if not ctx.faults.remove(name):
                    # Expired, or cleared before the rollback: the goal (not active) holds.
                    already_off.append(name)
        else:
            names = ctx.faults.reset()
        remaining = ctx.faults.active()
        cleared = not any(n in remaining for n in names) and (bool(action.names) or not remaining)
        verdict = Verdict("faults cleared", list(names), {"still_active": remaining}, cleared)
        return Outcome.of(self.name, [ActionResult(ok=cleared)], verdicts=(verdict,),
                          details={"cleared": list(names), "already_off": already_off})

    def judge(self, step: Step, outcome: Outcome, evidence: Evidence) -> list[Verdict]:
        return list(outcome.verdicts)
