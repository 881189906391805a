"""StepKind: the small interface every step kind implements.

A kind (kinds/pull.py, kinds/fault.py, ...) is a class with a `name` (the
YAML key that selects it), registered with chaos.steps.registry.register.
It parses its own part of a step into a frozen action, describes it in a few
words, runs it against a StepContext and returns an Outcome. Everything a
step has besides its action (name, timeout, repeat, expect) is parsed once,
in chaos.steps.parse; expectations are judged once, in chaos.steps.verdicts.

The loader's cross-checks ask kinds what they refer to (earlier steps,
users, faults) instead of looking inside actions, so no code outside a kind
needs to know its action's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from chaos.steps.outcome import Outcome
from chaos.steps.verdicts import Evidence, judge_results

if TYPE_CHECKING:
    from chaos.journal import Verdict
    from chaos.language.fields import Ctx
    from chaos.language.marked_yaml import MarkedDict
    from chaos.language.model import LabSpec, Step, Target
    from chaos.steps.context import StepContext


class StepKind:
    name: ClassVar[str]
    extra_keys: ClassVar[tuple[str, ...]] = ()
    """Step-level keys this kind takes besides name, description, expect, timeout, repeat."""
    expect_keys: ClassVar[tuple[str, ...]] = ("ok", "within")
    """The expectations that mean something for this kind."""
    repeatable: ClassVar[bool] = False
    needs_lab: ClassVar[bool] = False
    """True when the step changes the embedded lab itself (no target can do it)."""
    on_main_thread: ClassVar[bool] = False
    """Run on the runner's main thread, not a deadline-bounded worker: a child
    process's death signal is tied to the thread that started it."""
    judged_when_cut_short: ClassVar[bool] = False
    """Judge the expectations even when the step's deadline cut it short (a
    pull expected to time out passes when it does); otherwise such a step
    fails with its deadline verdict."""
    settles_mirror: ClassVar[bool] = False
    """The mirror snapshot after this step waits for storage writes to land."""

    # -- the language ---------------------------------------------------------

    def parse(self, ctx: Ctx, node: MarkedDict, line: int) -> Any:
        """The kind's action from the step's mapping (its key is node[self.name])."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the value under the kind's key."""
        raise NotImplementedError

    def extra_schema(self) -> dict[str, dict[str, Any]]:
        """JSON Schema of each extra_keys entry."""
        return {}

    def describe(self, action: Any) -> str:
        """What the step does, in a few words (the console, the plan, the journal)."""
        raise NotImplementedError

    def attempts_per_run(self, action: Any) -> int:
        """Attempts one run of the step makes (a pull of several images makes several)."""
        return 1

    def inputs(self, action: Any) -> dict[str, Any]:
        """The action as plain data, for the journal."""
        return {}

    # -- cross-checks (the loader asks; defaults: nothing) -----------------------

    def references(self, action: Any) -> list[tuple[str, str]]:
        """(key, step name) for every earlier step the action names."""
        return []

    def logins(self, action: Any) -> tuple[str, ...]:
        return ()

    def engines(self, action: Any) -> tuple[str, ...]:
        """Engines this step asks for by name (besides the run's)."""
        return ()

    def faults_switched_on(self, action: Any) -> tuple[str, ...]:
        return ()

    def faults_cleared(self, action: Any) -> tuple[str, ...]:
        return ()

    def target_problem(self, action: Any, target: Target) -> str | None:
        """Why this step cannot run against an existing set-up, or None."""
        if self.needs_lab:
            return f"{self.name}: needs the embedded lab; this scenario has a target"
        return None

    def lab_problem(self, action: Any, lab: LabSpec) -> str | None:
        """Why this step cannot run in the embedded lab the scenario describes, or None."""
        return None

    def private_repositories(self, action: Any) -> tuple[str, ...]:
        """Repositories this step makes private on the hub (the run checks none ends up in the mirror)."""
        return ()

    def settled_snapshots(self, action: Any) -> tuple[str, ...]:
        """Steps whose mirror snapshot this one compares sizes with: theirs must settle."""
        return ()

    # -- running --------------------------------------------------------------

    def run(self, step: Step, action: Any, ctx: StepContext) -> Outcome:
        raise NotImplementedError

    def judge(self, step: Step, outcome: Outcome, evidence: Evidence) -> list[Verdict]:
        """Verdicts once the step's upstream events are known. By default the
        step's expectations over its results; kinds that judge while they run
        (checks, waits) add their own verdicts to the outcome."""
        return judge_results(step.expect, outcome, evidence)

    def summary(self, outcome: Outcome) -> str:
        """The outcome in a few words after the arrow: `ok via mirror`, `NETWORK`."""
        return ""


def plain_inputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop unset values, so the journal shows what the scenario said."""
    return {k: v for k, v in values.items() if v is not None and v != () and v != []}
