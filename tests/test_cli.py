"""The CLI in-process: bad input gets one line, the right exit code, and no lab."""

from __future__ import annotations

from click.testing import CliRunner

from chaos.cli import main


def test_bad_scenario_exits_2_without_starting_a_lab(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nsteps:\n  - pull: alpine\n    expect: {served_by: cdn}\n")
    result = CliRunner().invoke(main, ["run", str(bad), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert f"chaos: error: {bad}:4: served_by" in result.output
    assert not (tmp_path / "run").exists()


def test_missing_scenario_file_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_validate_accepts_the_flagship():
    result = CliRunner().invoke(main, ["validate", "scenarios/hub-down.yaml"])
    assert result.exit_code == 0, result.output
    assert "hub-down" in result.output


def test_pull_rejects_a_bad_reference():
    result = CliRunner().invoke(main, ["pull", "NOT a ref", "--proxy", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "invalid image reference 'NOT a ref'" in result.output


def test_pull_without_a_proxy_refuses_to_go_live(tmp_path):
    result = CliRunner().invoke(main, ["pull", "alpine", "--lab-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--live" in result.output


def test_lab_status_without_a_lab(tmp_path):
    result = CliRunner().invoke(main, ["lab", "status", "--lab-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no lab running" in result.output
