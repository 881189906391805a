"""JUnit XML from journals: a test suite per scenario, a test case per step,
failures carrying each failed verdict and the step's diagnosis. CI systems
(GitHub, GitLab, Jenkins) show these as test results. Written with
junitparser, a maintained JUnit library, rather than by hand."""

from __future__ import annotations

from junitparser import Error, Failure, JUnitXml, Properties, Property, Skipped, TestCase, TestSuite

from chaos.journal import Journal, StepRecord
from chaos.report.diagnosis import Diagnosis


def junit_xml(journals: list[Journal]) -> JUnitXml:
    xml = JUnitXml("hub-chaos")
    for journal in journals:
        xml.add_testsuite(_suite(journal))
    return xml


def _suite(journal: Journal) -> TestSuite:
    suite = TestSuite(journal.name)
    suite.timestamp = journal.started
    suite.time = round(journal.seconds, 3)
    properties = Properties()
    for name, value in (("engine", journal.engine), ("where", journal.where), ("status", journal.status),
                        ("scenario", journal.scenario.get("path", ""))):
        properties.add_property(Property(name, str(value)))
    for finding in journal.findings:
        properties.add_property(Property("finding", str(finding.get("says", ""))))
    suite.append(properties)
    ran = {(s.phase, s.name) for s in journal.steps}
    for record in journal.steps:
        suite.add_testcase(_case(journal, record))
    for planned in journal.plan:
        if (planned.phase, planned.name) not in ran:
            case = TestCase(planned.name, classname=f"{journal.name}.{planned.phase}")
            case.result = [Skipped(_why_not_run(journal))]
            suite.add_testcase(case)
    if journal.status in ("aborted", "killed", "running") or journal.error and journal.status != "failed":
        case = TestCase("run", classname=journal.name)
        case.result = [Error(journal.error or f"the run ended {journal.status}", journal.status)]
        suite.add_testcase(case)
    return suite


def _case(journal: Journal, record: StepRecord) -> TestCase:
    case = TestCase(record.name, classname=f"{journal.name}.{record.phase}", time=round(record.seconds, 3))
    if record.passed:
        return case
    failed = record.failed_verdicts
    first = failed[0] if failed else None
    message = f"{first.what}: expected {first.expected!r}, got {first.actual!r}" if first else "failed"
    lines = [f"{record.loc}: {record.description}"]
    lines += [f"{v.what}: expected {v.expected!r}, got {v.actual!r}" for v in failed]
    if record.outcome.get("message"):
        lines.append(f"message: {record.outcome['message']}")
    if record.diagnosis:
        lines += Diagnosis.from_dict(record.diagnosis).lines()
    failure = Failure(message[:500], "verdict")
    failure.text = "\n".join(lines)
    case.result = [failure]
    return case


def _why_not_run(journal: Journal) -> str:
    if journal.error:
        return f"not run: {journal.error}"
    return f"not run: the run ended {journal.status}"
