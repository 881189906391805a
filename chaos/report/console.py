"""The run as a person reads it, from its journal alone: a header, one line
per step with its verdict and time, under a failed step what was expected
against what happened, and a summary. `chaos run` prints it as the steps
end; `chaos report` prints the same text from a journal.json."""

from __future__ import annotations

from chaos.journal import Journal, StepRecord
from chaos.report.diagnosis import Diagnosis

_PHASE_LABEL = {"steady_state_before": "steady ", "steady_state_after": "steady ", "rollback": "rollback "}
_MAX_ACTUAL = 200


def header(journal: Journal) -> str:
    count = len(journal.plan)
    where = journal.where
    return f"scenario {journal.name}: {count} step{'s' if count != 1 else ''} against {where}  (run folder {journal.run_dir})"


def name_width(journal: Journal) -> int:
    return max((len(step.name) for step in journal.plan), default=10)


def step_line(record: StepRecord, total: int, width: int = 34) -> str:
    verdict = "PASS" if record.passed else "FAIL"
    digits = len(str(total))
    summary = _PHASE_LABEL.get(record.phase, "") + record.description
    result = record.outcome.get("summary") or ""
    if result:
        summary += f" -> {result}"
    line = f"[{record.index + 1:>{digits}}/{total}] {verdict}  {record.name:<{width}} {summary:<58} {record.seconds:6.2f}s"
    if not record.passed:
        for failed in record.failed_verdicts:
            line += f"\n      {failed.what}: expected {failed.expected!r}, got {_short(failed.actual)}  ({record.loc})"
        message = record.outcome.get("message")
        if message:
            line += f"\n      message: {message}"
    if record.diagnosis:
        for why in Diagnosis.from_dict(record.diagnosis).lines():
            line += f"\n      {why}"
    return line


def summary_line(journal: Journal) -> str:
    total = len(journal.steps)
    failed = journal.failed_steps
    passed = total - len(failed)
    names = ", ".join(dict.fromkeys(s.name for s in failed))
    if journal.status == "interrupted":
        verdict = "interrupted"
    elif journal.status in ("running", "killed"):
        verdict = "cut short: the run was killed before it ended"
    elif not failed:
        verdict = "all expectations held"
    else:
        verdict = f"failed: {names}"
    if journal.deviated:
        verdict += " (the steady state did not hold after recovery)"
    if journal.error:
        verdict += f"; {journal.error}"
    journal_path = f"{journal.run_dir}/journal.json" if journal.run_dir else "journal.json"
    lines = [f"{journal.name}: {passed}/{total} steps passed in {journal.seconds:.1f}s, {verdict}"]
    lines += [f"finding: {finding.get('says')}" for finding in journal.findings]
    lines.append(f"journal: {journal_path}")
    return "\n".join(lines)


def render(journal: Journal) -> str:
    """The whole console report of one run."""
    width = name_width(journal)
    total = len(journal.plan)
    lines = [header(journal)]
    lines += [step_line(record, total, width) for record in journal.steps]
    lines.append(summary_line(journal))
    return "\n".join(lines)


def scenarios_line(journals: list[Journal]) -> str:
    """After several scenarios: how many passed."""
    failed = [j.name for j in journals if not j.passed]
    return f"{len(journals) - len(failed)}/{len(journals)} scenarios passed" + (f"; failed: {', '.join(failed)}" if failed else "")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_ACTUAL else text[: _MAX_ACTUAL - 3] + "..."
