"""push: a synthetic image to the mirror (a pull-through cache refuses it:
405 UNSUPPORTED), to the push registry sharing the mirror's storage (the blog
post's fix), or to the hub as a logged-in user."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chaos.errors import quoted
from chaos.language.fields import Ctx, did_you_mean, known_keys, optional_str, reference, size
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import LabSpec, Step, Target
from chaos.language.schema_parts import IMAGE, SIZE, closed_object
from chaos.steps.context import StepContext
from chaos.steps.kind import StepKind
from chaos.steps.outcome import Outcome
from chaos.steps.registry import register
from chaos.steps.repeat import repeated
from chaos.vocab.names import ENGINES
from chaos.vocab.reference import ImageReference

TARGETS = ("mirror", "hub", "push-registry")
DEADLINE_MARGIN_S = 0.5


@dataclass(frozen=True)
class PushAction:
    image: ImageReference
    to: str  # one of TARGETS
    size_bytes: int
    login: str | None = None
    engine: str | None = None  # who pushes (docker push, skopeo copy, ctr push); None: the run's engine


@register
class Push(StepKind):
    name = "push"
    extra_keys = ("engine",)
    expect_keys = ("ok", "error", "message", "upstream", "within", "success_rate")
    repeatable = True
    judged_when_cut_short = True

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> PushAction:
        value = node["push"]
        if not isinstance(value, MarkedDict):
            raise ctx.fail(line, "push: expected a mapping with image and to")
        known_keys(ctx, value, ("image", "to", "size", "login"), "push")
        ref = reference(ctx, value, "image")
        to = value.get("to", "mirror")
        if to not in TARGETS:
            raise ctx.fail(value.line_of("to"), f"to: unknown push target {quoted(to)} (expected one of: {', '.join(TARGETS)})")
        login = optional_str(ctx, value, "login")
        if to == "hub" and login is None:
            raise ctx.fail(value.line_of("to"), "push to hub needs a login (Hub never takes anonymous pushes)")
        engine = optional_str(ctx, node, "engine")
        if engine is not None and engine not in ENGINES:
            raise ctx.fail(node.line_of("engine"), f"engine: unknown engine {quoted(engine)}{did_you_mean(engine, ENGINES)} (available: {', '.join(ENGINES)})")
        return PushAction(image=ref, to=str(to), size_bytes=size(ctx, value, "size", default=1_000_000), login=login, engine=engine)

    def schema(self) -> dict[str, Any]:
        return closed_object({"image": IMAGE, "to": {"enum": list(TARGETS)}, "size": SIZE, "login": {"type": "string"}}, ("image",))

    def extra_schema(self) -> dict[str, dict[str, Any]]:
        return {"engine": {"enum": list(ENGINES)}}

    def describe(self, action: PushAction) -> str:
        return f"push {action.image.familiar} to {action.to}"

    def inputs(self, action: PushAction) -> dict[str, Any]:
        return {"image": str(action.image), "to": action.to, "size_bytes": action.size_bytes, "login": action.login,
                "engine": action.engine}

    def engines(self, action: PushAction) -> tuple[str, ...]:
        return (action.engine,) if action.engine else ()

    def logins(self, action: PushAction) -> tuple[str, ...]:
        return (action.login,) if action.login else ()

    def target_problem(self, action: PushAction, target: Target) -> str | None:
        if action.to != "mirror":
            return f"push to {action.to}: needs the embedded lab; this scenario has a target"
        return None

    def lab_problem(self, action: PushAction, lab: LabSpec) -> str | None:
        if action.to == "push-registry" and not lab.push_registry:
            return "push to push-registry: the lab has no push registry (set lab.push_registry: true)"
        return None

    def run(self, step: Step, action: PushAction, ctx: StepContext) -> Outcome:
        engine = action.engine or ctx.run_engine

        def once():
            timeout = max(0.1, ctx.deadline - time.monotonic() - DEADLINE_MARGIN_S)
            return [ctx.push(engine, action.image, action.to, action.size_bytes, action.login, timeout)]

        details = {"engine": engine}
        if step.repeat:
            wanted = step.repeat.times
            return Outcome.of(self.name, repeated(step.repeat, ctx.deadline, ctx.cancelled, once), repeats_wanted=wanted, details=details)
        return Outcome.of(self.name, once(), details=details)

    def summary(self, outcome: Outcome) -> str:
        if len(outcome.results) > 1 or outcome.repeats_wanted is not None:
            return f"{sum(1 for r in outcome.results if r.ok)}/{len(outcome.results)} ok"
        return "ok" if outcome.ok else (outcome.error_code or "failed")
