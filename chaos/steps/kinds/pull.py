"""pull: one image or several (`concurrency: N`), anonymously or with `login`,
the way the step's engine pulls: mirror first, then Hub."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chaos.errors import quoted
from chaos.language.fields import (
    Ctx,
    did_you_mean,
    optional_bool,
    optional_str,
    reference_value,
    whole_number,
)
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Step, Target
from chaos.language.schema_parts import IMAGE
from chaos.steps.context import StepContext
from chaos.steps.deadline import DeadlineExceeded, map_with_deadline
from chaos.steps.kind import StepKind
from chaos.steps.outcome import Outcome
from chaos.steps.registry import register
from chaos.steps.repeat import repeated
from chaos.vocab.codes import TIMEOUT
from chaos.vocab.names import ENGINES
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import PullResult

DEADLINE_MARGIN_S = 0.5  # left to the step to record the result after the engine gives up


@dataclass(frozen=True)
class PullAction:
    images: tuple[ImageReference, ...]
    login: str | None = None
    concurrency: int = 1
    engine: str | None = None  # None: the run's engine
    mirror_only: bool = False  # from the mirror alone, no fallback to Hub: what the mirror itself answers


@register
class Pull(StepKind):
    name = "pull"
    extra_keys = ("login", "concurrency", "engine", "mirror_only")
    expect_keys = ("ok", "error", "message", "served_by", "from_cache", "same_digest_as", "mirror", "upstream", "within", "success_rate")
    repeatable = True
    judged_when_cut_short = True

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> PullAction:
        value = node["pull"]
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, str) for item in items):
            raise ctx.fail(line, "pull: expected an image reference like alpine:3.19, or a list of them")
        images = tuple(reference_value(ctx, item, line) for item in items)
        concurrency = whole_number(ctx, node.get("concurrency", 1), node.line_of("concurrency"), "concurrency", 1, 64)
        engine = optional_str(ctx, node, "engine")
        if engine is not None and engine not in ENGINES:
            raise ctx.fail(node.line_of("engine"), f"engine: unknown engine {quoted(engine)}{did_you_mean(engine, ENGINES)} (available: {', '.join(ENGINES)})")
        return PullAction(images=images, login=optional_str(ctx, node, "login"), concurrency=concurrency, engine=engine,
                          mirror_only=optional_bool(ctx, node, "mirror_only") or False)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [IMAGE, {"type": "array", "items": IMAGE, "minItems": 1}]}

    def extra_schema(self) -> dict[str, dict[str, Any]]:
        return {
            "login": {"type": "string"},
            "concurrency": {"type": "integer", "minimum": 1, "maximum": 64},
            "engine": {"enum": list(ENGINES)},
            "mirror_only": {"type": "boolean", "description": "pull from the mirror alone, with no fallback to Hub"},
        }

    def describe(self, action: PullAction) -> str:
        return ("pull " + ", ".join(i.familiar for i in action.images) + (f" as {action.login}" if action.login else "")
                + (" from the mirror only" if action.mirror_only else ""))

    def inputs(self, action: PullAction) -> dict[str, Any]:
        return {"images": [str(i) for i in action.images], "login": action.login, "concurrency": action.concurrency,
                "engine": action.engine, "mirror_only": action.mirror_only or None}

    def attempts_per_run(self, action: PullAction) -> int:
        return len(action.images)

    def logins(self, action: PullAction) -> tuple[str, ...]:
        return (action.login,) if action.login else ()

    def engines(self, action: PullAction) -> tuple[str, ...]:
        return (action.engine,) if action.engine else ()

    def target_problem(self, action: PullAction, target: Target) -> str | None:
        if action.engine == "docker" and not target.live:
            return ("engine docker: against a target the Docker daemon falls back to Hub as it is configured, "
                    "maybe the real one; set target.live: true to allow that")
        return None

    def run(self, step: Step, action: PullAction, ctx: StepContext) -> Outcome:
        engine = action.engine or ctx.run_engine
        details = {"engine": engine}

        def pull_one(image: ImageReference) -> PullResult:
            # The whole pull's budget is what is left of the step, whatever the
            # engine: inside it each engine keeps only its real client's own
            # timeouts, so the step's deadline changes a verdict only by ending it.
            timeout = max(0.1, ctx.deadline - time.monotonic() - DEADLINE_MARGIN_S)
            puller = ctx.engine(engine, action.login, timeout, mirror_only=action.mirror_only)
            try:
                return puller.pull(image)
            finally:
                puller.close()

        def pull_all() -> list[PullResult]:
            if len(action.images) == 1:
                return [pull_one(action.images[0])]
            return map_with_deadline(pull_one, action.images, action.concurrency, max(0.1, ctx.deadline - time.monotonic()))

        try:
            if step.repeat:
                results = repeated(step.repeat, ctx.deadline, ctx.cancelled, pull_all)
                wanted = step.repeat.times * len(action.images) if step.repeat.times else None
                return Outcome.of(self.name, results, details=details, repeats_wanted=wanted)
            return Outcome.of(self.name, pull_all(), details=details)
        except DeadlineExceeded as exc:
            return Outcome(self.name, ok=False, error_code=TIMEOUT, details=details,
                           message=f"pulls did not finish before the step deadline: {exc}")

    def summary(self, outcome: Outcome) -> str:
        return _summary(outcome)


def _summary(outcome: Outcome) -> str:
    if len(outcome.results) > 1 or outcome.repeats_wanted is not None:
        good = sum(1 for r in outcome.results if r.ok)
        return f"{good}/{len(outcome.results)} ok"
    if outcome.ok:
        served = outcome.served_by
        return "ok" + (f" via {served}" if served else "")
    return outcome.error_code or "failed"
