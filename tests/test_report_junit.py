"""JUnit XML, checked by parsing it back with junitparser."""

from __future__ import annotations

from junitparser import Failure, JUnitXml, Skipped

from chaos.report.formats import render_format, write_format
from tests._journals import failed_journal, passing_journal


def parse(tmp_path, journals):
    path = tmp_path / "out.xml"
    write_format("junit", journals, path)
    return JUnitXml.fromfile(str(path))


def test_a_suite_per_scenario_and_a_case_per_step(tmp_path):
    xml = parse(tmp_path, [passing_journal(), failed_journal()])
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {"hub-down", "rate-limit-masked"}
    assert [case.name for case in suites["hub-down"]] == ["warm", "cached"]
    assert suites["hub-down"].failures == 0 and suites["hub-down"].tests == 2
    cases = {case.name: case for case in suites["rate-limit-masked"]}
    assert set(cases) == {"limit", "uncached", "undo", "never-ran"}
    assert cases["undo"].classname == "rate-limit-masked.rollback"


def test_a_failure_carries_the_verdicts_and_the_diagnosis(tmp_path):
    suite = next(s for s in parse(tmp_path, [failed_journal()]))
    case = next(c for c in suite if c.name == "uncached")
    (failure,) = [r for r in case.result if isinstance(r, Failure)]
    assert failure.message.startswith("ok: expected True, got False")
    assert "served_by: expected 'mirror', got None" in failure.text
    assert 'why: Hub\'s rate limit masked as "manifest unknown"' in failure.text
    assert "chain: client: TOOMANYREQUESTS <- mirror answered 404 MANIFEST_UNKNOWN" in failure.text
    assert suite.failures == 1


def test_steps_that_never_ran_are_skipped_with_the_reason(tmp_path):
    suite = next(s for s in parse(tmp_path, [failed_journal()]))
    never = next(c for c in suite if c.name == "never-ran")
    assert isinstance(never.result[0], Skipped)


def test_the_printed_form_is_the_same_xml():
    text = render_format("junit", [passing_journal()])
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    assert JUnitXml.fromstring(text.split("\n", 1)[1]).name == "hub-chaos"
