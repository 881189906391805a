"""restart: stop a lab component and start it again, same port, same
configuration (the embedded lab only)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chaos.errors import ChaosError, quoted
from chaos.language.fields import Ctx, did_you_mean
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Step
from chaos.steps.context import StepContext
from chaos.steps.kind import StepKind
from chaos.steps.outcome import ActionResult, Outcome
from chaos.steps.registry import register
from chaos.vocab.codes import COMPONENT_FAILED
from chaos.vocab.names import COMPONENTS


@dataclass(frozen=True)
class RestartAction:
    component: str  # one of chaos.vocab.names.COMPONENTS


@register
class Restart(StepKind):
    name = "restart"
    expect_keys = ("ok", "error", "message", "within")
    needs_lab = True
    on_main_thread = True

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> RestartAction:
        value = node["restart"]
        if value not in COMPONENTS:
            raise ctx.fail(line, f"restart: unknown component {quoted(value)}{did_you_mean(str(value), COMPONENTS)} (expected one of: {', '.join(COMPONENTS)})")
        return RestartAction(component=str(value))

    def schema(self) -> dict[str, Any]:
        return {"enum": list(COMPONENTS)}

    def describe(self, action: RestartAction) -> str:
        return f"restart {action.component}"

    def inputs(self, action: RestartAction) -> dict[str, Any]:
        return {"component": action.component}

    def run(self, step: Step, action: RestartAction, ctx: StepContext) -> Outcome:
        if ctx.lab is None:
            raise ChaosError("restart needs the embedded lab")
        started = time.monotonic()
        try:
            ctx.lab.restart(action.component)
        except ChaosError as exc:
            result = ActionResult(ok=False, error_code=COMPONENT_FAILED, message=str(exc), seconds=time.monotonic() - started)
        else:
            result = ActionResult(ok=True, seconds=time.monotonic() - started, facts={"component": action.component})
        if action.component == "proxy":
            # A new proxy has a new, empty tap and no faults.
            ctx.proxy_restarted()
        return Outcome.of(self.name, [result])

    def summary(self, outcome: Outcome) -> str:
        return "ok" if outcome.ok else (outcome.error_code or "failed")
