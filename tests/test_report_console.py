"""The console report, from a journal alone."""

from __future__ import annotations

from chaos.journal import Journal, PlannedStep, StepRecord, Verdict
from chaos.report.console import header, render, scenarios_line, step_line, summary_line


def journal(status="completed", steps=(), plan=None) -> Journal:
    j = Journal(scenario={"name": "auth-down"}, where="the embedded lab", run_dir="runs/a", status=status, seconds=2.0)
    j.steps = list(steps)
    j.plan = plan if plan is not None else [PlannedStep(s.name, s.phase, s.kind, s.description) for s in steps]
    return j


def record(name="warm", passed=True, **extra) -> StepRecord:
    values = dict(index=0, name=name, phase="steps", kind="pull", loc="a.yaml:7", description="pull alpine:3.19",
                  outcome={"ok": passed, "summary": "ok via mirror" if passed else "NETWORK", "message": None if passed else "EOF"},
                  passed=passed, seconds=0.25)
    values.update(extra)
    return StepRecord(**values)


def test_a_passing_step_is_one_line_with_its_result_and_time():
    line = step_line(record(), total=12, width=6)
    assert line == "[ 1/12] PASS  warm   pull alpine:3.19 -> ok via mirror" + " " * 25 + "   0.25s"


def test_a_failed_step_shows_each_failed_verdict_and_the_message():
    failed = record(passed=False, verdicts=[Verdict("ok", True, False, False), Verdict("error", ["DENIED"], "NETWORK", False)])
    lines = step_line(failed, total=3).splitlines()
    assert " FAIL " in lines[0] and "-> NETWORK" in lines[0]
    assert lines[1].strip() == "ok: expected True, got False  (a.yaml:7)"
    assert lines[2].strip() == "error: expected ['DENIED'], got 'NETWORK'  (a.yaml:7)"
    assert lines[3].strip() == "message: EOF"


def test_a_huge_actual_value_is_cut():
    failed = record(passed=False, verdicts=[Verdict("catalog", [], ["x" * 50] * 50, False)])
    assert len(step_line(failed, total=1).splitlines()[1]) < 300


def test_the_header_counts_the_planned_steps_singular_and_plural():
    one = journal(plan=[PlannedStep("a", "steps", "pull", "pull a")])
    assert header(one).startswith("scenario auth-down: 1 step against the embedded lab")
    seven = journal(plan=[PlannedStep(f"s{i}", "steps", "pull", "") for i in range(7)])
    assert "7 steps" in header(seven)


def test_the_summary_names_failed_steps_once_and_a_kill():
    failed = journal("failed", [record("a", passed=False), record("a", passed=False, phase="steady_state_after"), record("b")])
    assert "1/3 steps passed" in summary_line(failed) and "failed: a\n" in summary_line(failed)
    killed = journal("killed", [record()])
    assert "killed before it ended" in summary_line(killed)
    assert summary_line(killed).endswith("journal: runs/a/journal.json")


def test_render_is_header_steps_and_summary():
    j = journal(steps=[record()])
    assert render(j).splitlines()[0] == header(j) and "all expectations held" in render(j)


def test_several_scenarios_line():
    assert scenarios_line([journal(), journal("failed")]) == "1/2 scenarios passed; failed: auth-down"
