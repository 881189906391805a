"""The CLI in-process: bad input gets one line, the right exit code, and no lab."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from chaos.cli import main
from chaos.scenario.loader import load_scenario


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


def test_proxy_options_lists_every_addon_option_with_help():
    result = CliRunner().invoke(main, ["proxy-options"])
    assert result.exit_code == 0, result.output
    for option in ("hub_routes", "hub_control", "hub_control_portfile", "hub_faults", "hub_tap_capacity",
                   "hub_cdn_host", "hub_cdn_secret_file"):
        assert f"\n{option}: " in "\n" + result.output
    assert "connection_strategy" not in result.output  # mitmproxy's own options stay out


def test_undefined_variable_exits_2_and_var_fixes_it(tmp_path):
    scenario = tmp_path / "v.yaml"
    scenario.write_text("name: t\nsteps:\n  - pull: ${IMAGE}\n")
    missing = CliRunner().invoke(main, ["validate", str(scenario)])
    assert missing.exit_code == 2 and f"{scenario}:3: undefined variable 'IMAGE'" in missing.output
    given = CliRunner().invoke(main, ["validate", str(scenario), "--var", "IMAGE=redis:7"])
    assert given.exit_code == 0, given.output
    bad = CliRunner().invoke(main, ["validate", str(scenario), "--var", "no-equals"])
    assert bad.exit_code == 2 and "--var 'no-equals'" in bad.output


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path):
    result = CliRunner().invoke(main, ["run", "scenarios/hub-down.yaml", "--dry-run", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "warm-alpine" in result.output and "alice/private-app:1.0" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("live", [True, False])
def test_dry_run_and_the_run_say_when_the_real_hub_may_be_reached(tmp_path, live):
    scenario = tmp_path / "target.yaml"
    scenario.write_text("name: t\ntarget: {mirror: 'http://127.0.0.1:9', control: 'http://127.0.0.1:9'"
                        + (", live: true" if live else ", proxy: 'http://127.0.0.1:9'") + "}\nsteps:\n  - pull: alpine\n")
    result = CliRunner().invoke(main, ["run", str(scenario), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert ("live: the real Docker Hub may be reached" in result.output) is live
    where = load_scenario(scenario).target.describe()
    assert where == "the target http://127.0.0.1:9" + (" (live: the real Docker Hub may be reached)" if live else "")


def test_validate_reports_every_file_and_exits_2_if_any_is_bad(tmp_path):
    (tmp_path / "a-good.yaml").write_text("name: good\nsteps:\n  - pull: alpine\n")
    (tmp_path / "b-bad.yaml").write_text("name: x\nsteps: []\n")
    (tmp_path / "c-bad.yaml").write_text("name: y\nsteps:\n  - pul: alpine\n")
    (tmp_path / "d-good.yaml").write_text("name: good2\nsteps:\n  - pull: nginx\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "a-good.yaml: ok" in result.output and "d-good.yaml: ok" in result.output
    assert "b-bad.yaml:2: steps" in result.output and "c-bad.yaml:3: step has no kind" in result.output
    assert "2 of 4 scenario files are not valid" in result.output


def test_a_var_no_scenario_knows_is_refused():
    result = CliRunner().invoke(main, ["validate", "scenarios/hub-down.yaml", "--var", "NOPE=1"])
    assert result.exit_code == 2
    assert "--var NOPE: no scenario given declares or uses a variable of that name" in result.output


def test_control_takes_host_and_port_without_a_scheme():
    # Nothing listens on port 9: a transport error (exit 3) proves the address was accepted as a URL.
    result = CliRunner().invoke(main, ["fault", "list", "--control", "127.0.0.1:9"])
    assert result.exit_code == 3, result.output
    assert "http://127.0.0.1:9" in result.output
    bad = CliRunner().invoke(main, ["fault", "list", "--control", "not a url"])
    assert bad.exit_code == 2 and "expected HOST:PORT" in bad.output


def test_fault_ttl_must_be_a_finite_positive_number():
    for value in ("nan", "inf", "-1", "0", "86401"):
        result = CliRunner().invoke(main, ["fault", "add", "x", "--kind", "refuse", "--ttl", value, "--control", "127.0.0.1:9"])
        assert result.exit_code == 2, (value, result.output)
        assert "--ttl" in result.output


def test_fault_kind_and_mode_are_different_options():
    # auth-deny has a parameter called mode: --mode is no alias of --kind.
    result = CliRunner().invoke(main, ["fault", "add", "x", "--kind", "auth-deny", "--mode", "forbidden", "--control", "127.0.0.1:9"])
    assert result.exit_code == 2 and "No such option '--mode'" in result.output


def test_fault_add_from_a_file_needs_nothing_else(tmp_path):
    spec = tmp_path / "f.yaml"
    spec.write_text("- {name: a, kind: refuse}\n")
    result = CliRunner().invoke(main, ["fault", "add", "-f", str(spec), "--kind", "refuse", "--control", "127.0.0.1:9"])
    assert result.exit_code == 2 and "the file says everything" in result.output


def test_fault_kinds_lists_every_kind_with_its_parameters():
    result = CliRunner().invoke(main, ["fault", "kinds"])
    assert result.exit_code == 0
    assert "latency" in result.output and "delay_ms: int (required)" in result.output
    assert "jitter_ms: int = 0" in result.output
