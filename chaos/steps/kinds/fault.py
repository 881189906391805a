"""fault: switch a fault on in the fault proxy (chaos.faults: kinds, match,
trigger, ttl), validated here exactly as the control API will."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaos.faults.registry import kinds as fault_kinds
from chaos.faults.spec import FaultSpecError, parse_fault_spec
from chaos.journal import Verdict
from chaos.language.fields import Ctx, plain
from chaos.language.marked_yaml import MarkedDict
from chaos.language.model import Step
from chaos.language.schema_parts import closed_object, or_variable
from chaos.steps.context import StepContext
from chaos.steps.kind import StepKind
from chaos.steps.outcome import ActionResult, Outcome
from chaos.steps.registry import register
from chaos.steps.verdicts import Evidence


@dataclass(frozen=True)
class FaultAction:
    spec: dict[str, Any]  # validated by chaos.faults; sent as-is to the control API

    @property
    def name(self) -> str:
        return self.spec["name"]


@register
class Fault(StepKind):
    name = "fault"
    expect_keys = ("ok",)

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> FaultAction:
        value = node["fault"]
        if not isinstance(value, MarkedDict):
            raise ctx.fail(line, "fault: expected a mapping with name and kind")
        spec = plain(value)
        try:
            parse_fault_spec(spec)
        except FaultSpecError as exc:
            top = exc.field.split(".")[0] if isinstance(exc.field, str) else None
            where = value.line_of(top) if top in value else line
            # Point at the nested key when the problem is inside params/match/trigger.
            if top in value and isinstance(value[top], MarkedDict) and "." in exc.field:
                inner = exc.field.split(".")[1]
                where = value[top].line_of(inner) if inner in value[top] else where
            raise ctx.fail(where, f"fault: {exc}") from None
        return FaultAction(spec=spec)

    def schema(self) -> dict[str, Any]:
        return fault_schema()

    def describe(self, action: FaultAction) -> str:
        return f"fault {action.name} ({action.spec.get('kind')}) on"

    def inputs(self, action: FaultAction) -> dict[str, Any]:
        return {"fault": action.spec}

    def faults_switched_on(self, action: FaultAction) -> tuple[str, ...]:
        return (action.name,)

    def run(self, step: Step, action: FaultAction, ctx: StepContext) -> Outcome:
        applied = ctx.faults.add(action.spec)
        verdict = Verdict("fault switched on", action.name, applied.get("name"), applied.get("name") == action.name)
        return Outcome.of(self.name, [ActionResult(ok=verdict.ok)], details={"fault": applied}, verdicts=(verdict,))

    def judge(self, step: Step, outcome: Outcome, evidence: Evidence) -> list[Verdict]:
        return list(outcome.verdicts)


def fault_schema() -> dict[str, Any]:
    """The fault section, built from the registered kinds' parameter dataclasses."""
    import dataclasses
    import types
    import typing

    def param_schema(hint: Any) -> dict:
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            options = [param_schema(h) for h in typing.get_args(hint) if h is not type(None)]
            return options[0] if len(options) == 1 else {"anyOf": options}
        if origin is typing.Literal:
            return {"enum": list(typing.get_args(hint))}
        return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}}.get(hint, {})

    # Only the shipped kinds: a kind registered at run time (a plugin, a test)
    # must not change the committed schema.
    shipped = {name: kind for name, kind in fault_kinds().items() if kind.__module__.startswith("chaos.faults.kinds.")}
    variants = []
    for name, kind in sorted(shipped.items()):
        hints = typing.get_type_hints(kind.Params)
        params = {f.name: or_variable(param_schema(hints[f.name])) for f in dataclasses.fields(kind.Params)}
        required = [f.name for f in dataclasses.fields(kind.Params)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        params_schema = closed_object(params, tuple(required))
        variants.append({"if": {"properties": {"kind": {"const": name}}}, "then": {"properties": {"params": params_schema}}})
    return {
        "type": "object",
        "required": ["name", "kind"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$"},
            "kind": {"enum": sorted(shipped)},
            "params": {"type": "object"},
            "match": {"type": "object"},
            "trigger": {"type": "object"},
            "ttl_s": {"type": "number", "exclusiveMinimum": 0},
            "expires_at": {"type": "number"},
        },
        "allOf": variants,
    }
