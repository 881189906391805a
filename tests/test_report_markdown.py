"""The Markdown summary (what a GitHub job shows)."""

from __future__ import annotations

from click.testing import CliRunner

from chaos.cli import main
from chaos.report.markdown import markdown
from tests._journals import failed_journal, passing_journal


def test_a_table_per_scenario_and_the_failures_below():
    text = markdown([passing_journal(), failed_journal()])
    assert text.startswith("## hub-chaos: 1/2 scenarios passed")
    assert "### ✅ hub-down: 2/2 steps passed in 3.0s (completed)" in text
    assert "### ❌ rate-limit-masked: 2/3 steps passed" in text
    assert "| 2 | `uncached` |" in text and "| **FAIL** |" in text
    assert "- why: Hub's rate limit masked as \"manifest unknown\"" in text


def test_text_from_the_run_cannot_break_the_markdown():
    text = markdown([failed_journal()])
    assert "<script>" not in text and "\\<script\\>" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| 2 |")]
    assert table_rows and table_rows[0].count(" | ") == 5  # the pipe in the step text is escaped, not a column


def test_the_summary_is_appended_to_the_github_step_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier job output\n")
    run = tmp_path / "run"
    run.mkdir()
    passing_journal().write(run / "journal.json")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert summary.read_text().startswith("earlier job output\n### ✅ hub-down")
