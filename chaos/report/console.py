"""The run as a person reads it: one line per step with its verdict and time,
and under a failed step what was expected against what happened."""

from __future__ import annotations

from chaos.runner.journal import Journal, StepRecord
from chaos.scenario.model import Step


def _summary(step: Step, record: StepRecord) -> str:
    outcome = record.outcome
    if step.kind == "pull":
        what = f"pull {step.action.image.familiar}" + (f" as {step.action.login}" if step.action.login else "")
    elif step.kind == "push":
        what = f"push {step.action.image.familiar} to {step.action.to}"
    elif step.kind == "fault":
        what = f"fault {step.action.name} ({step.action.spec.get('kind')}) on"
    elif step.kind == "clear":
        what = "clear " + (", ".join(step.action.names) or "all faults")
    else:
        what = "check mirror"
    if step.kind in ("pull", "push"):
        if outcome.get("ok"):
            result = "ok" + (f" via {outcome['served_by']}" if outcome.get("served_by") else "")
        else:
            result = f"{outcome.get('error_code')}" + (f" ({outcome['served_by']})" if outcome.get("served_by") else "")
        what = f"{what} -> {result}"
    return what


def step_line(index: int, total: int, step: Step, record: StepRecord, name_width: int = 34) -> str:
    verdict = "PASS" if record.passed else "FAIL"
    width = len(str(total))
    line = f"[{index + 1:>{width}}/{total}] {verdict}  {step.name:<{name_width}} {_summary(step, record):<58} {record.seconds:6.2f}s"
    if not record.passed:
        for verdict_ in record.verdicts:
            if not verdict_["ok"]:
                line += f"\n      {verdict_['what']}: expected {verdict_['expected']!r}, got {verdict_['actual']!r}  ({step.loc})"
        message = record.outcome.get("message")
        if message:
            line += f"\n      message: {message}"
    return line


def summary_line(journal: Journal, journal_path: str) -> str:
    total = len(journal.steps)
    failed = len(journal.failed_steps)
    passed = total - failed
    names = ", ".join(s.name for s in journal.failed_steps)
    verdict = "all expectations held" if not failed else f"failed: {names}"
    return f"{journal.scenario['name']}: {passed}/{total} steps passed in {journal.seconds:.1f}s, {verdict}\njournal: {journal_path}"
