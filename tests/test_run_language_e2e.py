"""The scenario language through the real lab: every shipped scenario (which
between them use every step kind and expectation), a directory run, tags,
bounded deadlines under a blackhole, steady-state deviation, and rollback
after a failed step and after SIGINT against an external target."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab_helpers import CHAOS, ROOT, processes_mentioning, run_chaos

pytestmark = pytest.mark.lab
SCENARIOS = ROOT / "scenarios"


def journal(run_dir: Path) -> dict:
    return json.loads((run_dir / "journal.json").read_text())


def test_every_shipped_scenario_passes_in_one_directory_run(tmp_path):
    run_dir = tmp_path / "runs"
    result = run_chaos("run", str(SCENARIOS), "--run-dir", str(run_dir), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    names = sorted(scenario_name(p) for p in SCENARIOS.glob("*.yaml"))
    assert sorted(p.name for p in run_dir.iterdir()) == names  # one run folder per scenario
    kinds, expectations = set(), set()
    for folder in run_dir.iterdir():
        j = journal(folder)
        assert j["status"] == "completed", folder
        for step in j["steps"]:
            kinds.add(step["kind"])
            expectations |= {v["what"].split(" ")[0].split(".")[0] for v in step["verdicts"]}
    assert kinds == {"pull", "push", "check", "fault", "clear", "wait", "restart", "publish"}
    for what in ("ok", "error", "message", "served_by", "from_cache", "same_digest_as", "upstream", "within", "success_rate", "tap"):
        assert what in expectations, (what, sorted(expectations))
    assert f"{len(names)}/{len(names)} scenarios passed" in result.stdout


def scenario_name(path: Path) -> str:
    import yaml

    return yaml.safe_load(path.read_text())["name"]


def test_tags_pick_scenarios(tmp_path):
    result = run_chaos("run", str(SCENARIOS), "--tag", "restart", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "scenario mirror-restart-during-outage" in result.stdout
    assert "scenario hub-down" not in result.stdout
    none = run_chaos("run", str(SCENARIOS), "--tag", "no-such-tag", cwd=tmp_path)
    assert none.returncode == 2 and "no scenario has any of the tags" in none.stderr


BLACKHOLE = """\
name: blackholed
lab:
  images: [{ref: alpine:3.19, size: 256KB}]
steps:
  - name: hub-swallows-everything
    fault: {name: hole, kind: blackhole, match: {roles: [registry, auth]}}
  - name: uncached-pull
    pull: alpine:3.19
    timeout: 4s
    expect: {ok: true}
rollback:
  - clear: hole
"""


def test_blackhole_with_a_short_deadline_ends_in_bounded_time(tmp_path):
    scenario = tmp_path / "blackhole.yaml"
    scenario.write_text(BLACKHOLE)
    started = time.monotonic()
    result = run_chaos("run", str(scenario), "--run-dir", str(tmp_path / "run"), cwd=tmp_path, timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.stdout + result.stderr
    steps = {s["name"]: s for s in journal(tmp_path / "run")["steps"]}
    pull = steps["uncached-pull"]
    assert not pull["passed"] and pull["seconds"] < 10
    assert pull["outcome"].get("error_code") == "TIMEOUT" or any(v["what"] == "deadline" for v in pull["verdicts"])
    assert steps["rollback-01-clear"]["passed"]


DEVIATION = """\
name: deviates
lab:
  images: [{ref: alpine:3.19, size: 256KB}]
steady_state:
  - name: alpine-from-the-cache
    pull: alpine:3.19
    expect: {served_by: mirror}
steps:
  - name: hub-down
    fault: {name: hub-down, kind: refuse, match: {roles: [registry, auth]}}
  - name: mirror-restarted-during-outage
    restart: mirror
    expect: {ok: false}
"""


def test_steady_state_that_does_not_come_back_is_a_deviation(tmp_path):
    scenario = tmp_path / "deviates.yaml"
    scenario.write_text(DEVIATION)
    result = run_chaos("run", str(scenario), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    j = journal(tmp_path / "run")
    assert j["deviated"] is True and j["status"] == "failed"
    phases = [(s["phase"], s["passed"]) for s in j["steps"]]
    assert phases == [("steady_state_before", True), ("steps", True), ("steps", True), ("steady_state_after", False)]
    assert "the steady state did not hold after recovery" in result.stdout


@pytest.fixture()
def running_lab(tmp_path):
    lab_dir = tmp_path / "lab"
    up = run_chaos("lab", "up", str(SCENARIOS / "hub-down.yaml"), "--lab-dir", str(lab_dir), cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((lab_dir / "lab.json").read_text())
    try:
        yield state
    finally:
        run_chaos("lab", "down", "--lab-dir", str(lab_dir), cwd=tmp_path)
        assert not processes_mentioning(str(lab_dir))


def target_scenario(state: dict, steps: str) -> str:
    return (
        "name: against-target\n"
        f"target:\n  mirror: {state['mirror_url']}\n  control: {state['control_url']}\n"
        f"  proxy: {state['proxy_url']}\n  ca: {state['ca_file']}\n  storage: {state['mirror_storage']}\n"
        "steps:\n" + steps
    )


def active_faults(state: dict) -> list:
    from chaos.proxy.control_client import ControlClient

    return ControlClient(state["control_url"]).list()


def test_rollback_clears_faults_after_a_failed_step_on_a_target(tmp_path, running_lab):
    scenario = tmp_path / "target.yaml"
    scenario.write_text(target_scenario(running_lab, (
        "  - name: hub-down\n    fault: {name: hub-down, kind: refuse, match: {roles: [registry, auth]}}\n"
        "  - name: wrongly-expects-success\n    pull: nginx:1.25\n    expect: {ok: true}\n"
    )) + "rollback:\n  - name: cached-after\n    pull: alpine:3.19\n")
    result = run_chaos("run", str(scenario), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    j = journal(tmp_path / "run")
    assert [s["name"] for s in j["steps"] if s["phase"] == "rollback"] == ["cached-after"]
    # The rollback ran with the fault already gone: the pull reached Hub.
    assert j["steps"][-1]["faults_active"] == [] and j["steps"][-1]["passed"]
    assert active_faults(running_lab) == []


def test_a_target_without_storage_is_checked_by_its_catalog_alone(tmp_path, running_lab):
    head, steps = target_scenario(running_lab, "").split("  storage: ")[0], (
        "  - {name: warm, pull: alpine:3.19}\n"
        "  - name: looked-at\n    check: {cached: [library/alpine], not_cached: [library/nginx]}\n"
    )
    scenario = tmp_path / "target.yaml"
    scenario.write_text(head + "steps:\n" + steps)
    result = run_chaos("run", str(scenario), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = {v["what"]: v for v in journal(tmp_path / "run")["steps"][-1]["verdicts"]}
    assert verdicts["cached library/alpine"]["actual"] == {"in_catalog": True}
    assert verdicts["not cached library/nginx"]["actual"] == {"in_catalog": False}


def test_a_catalog_nobody_could_read_is_a_finding_not_silence(tmp_path, running_lab):
    # The lab's hub stands in for a mirror whose catalog needs a login (Harbor's, a Nexus repository's).
    scenario = tmp_path / "target.yaml"
    scenario.write_text(
        "name: against-target\n"
        f"target:\n  mirror: {running_lab['hub_url']}\n  control: {running_lab['control_url']}\n"
        f"  proxy: {running_lab['proxy_url']}\n  ca: {running_lab['ca_file']}\n  private: [alice/private-app]\n"
        "steps:\n  - {name: pause, wait: 10ms}\n"
    )
    result = run_chaos("run", str(scenario), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (finding,) = journal(tmp_path / "run")["findings"]
    assert finding["kind"] == "private-content-unknown" and finding["repositories"] == ["alice/private-app"]
    assert finding["says"].startswith("could not read the mirror's catalog to look for private repositories "
                                      "(alice/private-app): catalog of ")
    assert finding["says"].endswith("looked in neither (no storage folder to read)")
    assert f"finding: {finding['says']}" in result.stdout


def test_sigint_clears_faults_on_a_target(tmp_path, running_lab):
    scenario = tmp_path / "target.yaml"
    scenario.write_text(target_scenario(running_lab, (
        "  - name: hub-down\n    fault: {name: hub-down, kind: refuse}\n"
        "  - name: long-wait\n    wait: 60s\n"
    )))
    proc = subprocess.Popen(
        [*CHAOS, "run", str(scenario), "--run-dir", str(tmp_path / "run")], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not active_faults(running_lab):
            time.sleep(0.1)
        assert active_faults(running_lab), "the fault never went on"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, output
    assert active_faults(running_lab) == []
    assert journal(tmp_path / "run")["status"] == "interrupted"
