"""A Markdown summary of runs, for a CI job's summary page (GitHub's
$GITHUB_STEP_SUMMARY, a GitLab merge request note). Plain text formatting:
no library needed for a table."""

from __future__ import annotations

from chaos.journal import Journal, StepRecord
from chaos.report.diagnosis import Diagnosis

_PHASES = {"steady_state_before": "steady state", "steps": "", "rollback": "rollback", "steady_state_after": "steady state (after)"}


def markdown(journals: list[Journal]) -> str:
    parts = []
    if len(journals) > 1:
        passed = sum(1 for j in journals if j.passed)
        parts.append(f"## hub-chaos: {passed}/{len(journals)} scenarios passed\n")
    for journal in journals:
        parts.append(_scenario(journal))
    return "\n".join(parts).rstrip() + "\n"


def _scenario(journal: Journal) -> str:
    total = len(journal.steps)
    passed = total - len(journal.failed_steps)
    mark = "✅" if journal.passed else "❌"
    lines = [f"### {mark} {_text(journal.name)}: {passed}/{total} steps passed in {journal.seconds:.1f}s ({journal.status})", ""]
    meta = f"Engine `{journal.engine}` against {_text(journal.where)}."
    if journal.deviated:
        meta += " **The steady state did not hold after recovery.**"
    if journal.error:
        meta += f" {_text(journal.error)}"
    lines += [meta, "", "| # | step | does | result | verdict | time |", "| ---: | --- | --- | --- | :---: | ---: |"]
    for record in journal.steps:
        phase = _PHASES.get(record.phase, "")
        does = (f"{phase}: " if phase else "") + record.description
        verdict = "pass" if record.passed else "**FAIL**"
        lines.append(f"| {record.index + 1} | `{_cell(record.name)}` | {_cell(does)} | {_cell(record.outcome.get('summary') or '')} "
                     f"| {verdict} | {record.seconds:.2f}s |")
    if journal.findings:
        lines += ["", "**Findings**", ""] + [f"- {_text(f.get('says', ''))}" for f in journal.findings]
    failures = [r for r in journal.steps if not r.passed]
    if failures:
        lines += ["", "<details open><summary>Failures</summary>", ""]
        for record in failures:
            lines += _failure(record)
        lines += ["</details>"]
    return "\n".join(lines) + "\n"


def _failure(record: StepRecord) -> list[str]:
    lines = [f"**{_text(record.name)}** ({_text(record.loc)})", ""]
    for verdict in record.failed_verdicts:
        lines.append(f"- {_text(verdict.what)}: expected `{_code(repr(verdict.expected))}`, got `{_code(repr(verdict.actual))}`")
    if record.outcome.get("message"):
        lines.append(f"- message: {_text(record.outcome['message'])}")
    if record.diagnosis:
        for line in Diagnosis.from_dict(record.diagnosis).lines():
            lines.append(f"- {_text(line)}")
    return lines + [""]


def _text(value: str) -> str:
    """Text that Markdown shows as it is (no accidental emphasis, links or HTML)."""
    out = str(value)
    for char in "\\`*_{}[]<>#|":
        out = out.replace(char, "\\" + char)
    return out


def _cell(value: str) -> str:
    return _text(value).replace("\n", " ")


def _code(value: str, limit: int = 160) -> str:
    value = value.replace("`", "'").replace("\n", " ")
    return value if len(value) <= limit else value[: limit - 3] + "..."
