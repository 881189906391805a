"""The run as a person reads it: one line per step with its verdict and time,
and under a failed step what was expected against what happened."""

from __future__ import annotations

from chaos.runner.journal import Journal, StepRecord
from chaos.scenario.model import Scenario, Step


def describe(step: Step) -> str:
    """What the step does, in a few words (also used by --dry-run)."""
    a = step.action
    if step.kind == "pull":
        what = "pull " + ", ".join(i.familiar for i in a.images) + (f" as {a.login}" if a.login else "")
    elif step.kind == "push":
        what = f"push {a.image.familiar} to {a.to}"
    elif step.kind == "fault":
        what = f"fault {a.name} ({a.spec.get('kind')}) on"
    elif step.kind == "clear":
        what = "clear " + (", ".join(a.names) or "all faults")
    elif step.kind == "wait":
        what = f"wait {a.seconds:g}s" if a.seconds is not None else "wait until check holds"
    elif step.kind == "restart":
        what = f"restart {a.component}"
    elif step.kind == "publish":
        what = f"publish {a.image.ref.familiar} to hub"
    else:
        what = "check mirror"
    if step.repeat:
        what += f" x{step.repeat.times}" if step.repeat.times else f" for {step.repeat.duration_s:g}s"
    return what


def _result(step: Step, record: StepRecord) -> str:
    outcome = record.outcome
    if "results" in outcome:
        results = outcome["results"]
        good = sum(1 for r in results if r.get("ok"))
        return f" -> {good}/{len(results)} ok"
    if step.kind not in ("pull", "push", "restart"):
        return ""
    if outcome.get("ok"):
        return " -> ok" + (f" via {outcome['served_by']}" if outcome.get("served_by") else "")
    return f" -> {outcome.get('error_code')}"


def step_line(index: int, total: int, step: Step, record: StepRecord, name_width: int = 34) -> str:
    verdict = "PASS" if record.passed else "FAIL"
    width = len(str(total))
    phase = {"steady_state_before": "steady ", "steady_state_after": "steady ", "rollback": "rollback "}.get(record.phase, "")
    summary = phase + describe(step) + _result(step, record)
    line = f"[{index + 1:>{width}}/{total}] {verdict}  {step.name:<{name_width}} {summary:<58} {record.seconds:6.2f}s"
    if not record.passed:
        for verdict_ in record.verdicts:
            if not verdict_["ok"]:
                line += f"\n      {verdict_['what']}: expected {verdict_['expected']!r}, got {_short(verdict_['actual'])}  ({step.loc})"
        message = record.outcome.get("message")
        if message:
            line += f"\n      message: {message}"
    return line


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def summary_line(journal: Journal, journal_path: str) -> str:
    total = len(journal.steps)
    failed = len(journal.failed_steps)
    passed = total - failed
    names = ", ".join(dict.fromkeys(s.name for s in journal.failed_steps))
    if journal.status == "interrupted":
        verdict = "interrupted"
    elif not failed:
        verdict = "all expectations held"
    else:
        verdict = f"failed: {names}"
    if journal.deviated:
        verdict += " (the steady state did not hold after recovery)"
    if journal.error:
        verdict += f"; {journal.error}"
    return f"{journal.scenario['name']}: {passed}/{total} steps passed in {journal.seconds:.1f}s, {verdict}\njournal: {journal_path}"


def plan(scenario: Scenario) -> str:
    """--dry-run: what would happen, without starting anything."""
    lines = [f"scenario {scenario.name} ({scenario.path})"]
    if scenario.target:
        lines.append(f"  target: mirror {scenario.target.mirror_url}, fault proxy control {scenario.target.control_url}")
    else:
        lab = scenario.lab
        lines.append(f"  lab: {len(lab.images)} images, {len(lab.users)} users" + (", push registry" if lab.push_registry else ""))
        for image in lab.images:
            lines.append(f"    {image.ref.familiar:<32} {image.size_bytes / 1e6:8.1f} MB {'private' if image.private else 'public'}")
    for title, steps in (("steady state", scenario.steady_state), ("steps", scenario.steps), ("rollback", scenario.rollback)):
        if steps:
            lines.append(f"  {title}:")
            for step in steps:
                lines.append(f"    {step.name:<36} {describe(step):<50} deadline {step.timeout_s:g}s")
    return "\n".join(lines)
