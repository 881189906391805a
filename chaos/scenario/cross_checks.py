"""What a scenario's steps say about each other, checked before anything runs:
unique names, references to earlier steps only, known users, cleared faults
that exist, and steps the embedded lab or the target can actually perform.
Kinds say what they refer to (chaos.steps.kind.StepKind); nothing here looks
inside an action."""

from __future__ import annotations

from chaos.errors import quoted
from chaos.language.fields import Ctx, did_you_mean
from chaos.language.model import Scenario
from chaos.steps.registry import kinds


def check_scenario(ctx: Ctx, scenario: Scenario) -> None:
    check_names(ctx, scenario)
    check_references(ctx, scenario)
    check_logins(ctx, scenario)
    check_cleared_faults(ctx, scenario)
    check_where(ctx, scenario)


def check_names(ctx: Ctx, scenario: Scenario) -> None:
    seen: dict[str, str] = {}
    for step in scenario.all_steps():
        if step.name in seen:
            raise ctx.fail(step.line, f"duplicate step name {quoted(step.name)} (first at {seen[step.name]})")
        seen[step.name] = step.loc


def check_references(ctx: Ctx, scenario: Scenario) -> None:
    """Names a step refers to must be earlier steps (their results must exist)."""
    all_names = [s.name for s in scenario.all_steps()]
    earlier: set[str] = set()
    for step in scenario.all_steps():
        refs = [("same_digest_as", step.expect.same_digest_as)] if step.expect.same_digest_as else []
        refs += kinds()[step.kind].references(step.action)
        for key, ref in refs:
            if ref not in earlier:
                where = "a later step" if ref in all_names else "no step"
                raise ctx.fail(step.line, f"{key}: {quoted(ref)} names {where}; it must name an earlier step{did_you_mean(ref, sorted(earlier))}")
        earlier.add(step.name)


def check_logins(ctx: Ctx, scenario: Scenario) -> None:
    users = {u.name for u in scenario.users}
    for step in scenario.all_steps():
        for login in kinds()[step.kind].logins(step.action):
            if login not in users:
                where = "target.users" if scenario.target else "lab.users"
                raise ctx.fail(step.line, f"login: unknown user {quoted(login)}; {where} defines: {', '.join(sorted(users)) or 'nobody'}")


def check_cleared_faults(ctx: Ctx, scenario: Scenario) -> None:
    """`clear: NAME` must name a fault some earlier step switches on: a typo
    would otherwise leave the real fault on until it expires."""
    defined: set[str] = set()
    for step in scenario.all_steps():
        kind = kinds()[step.kind]
        defined.update(kind.faults_switched_on(step.action))
        for name in kind.faults_cleared(step.action):
            if name not in defined:
                raise ctx.fail(step.line, f"clear: no earlier step switches on a fault named {quoted(name)}{did_you_mean(name, sorted(defined))}")


def check_where(ctx: Ctx, scenario: Scenario) -> None:
    """Against an existing mirror there is no lab to restart or publish to; in
    the lab, a step may need a part the scenario did not ask for."""
    for step in scenario.all_steps():
        kind = kinds()[step.kind]
        if scenario.target is not None:
            problem = kind.target_problem(step.action, scenario.target)
        else:
            problem = kind.lab_problem(step.action, scenario.lab)
        if problem:
            raise ctx.fail(step.line, problem)
