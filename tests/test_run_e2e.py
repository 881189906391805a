"""`chaos run` end to end against the real processes: the flagship scenario
passes, a wrong expectation fails naming its step, and no run leaves a process
or a listening port behind (success, failed start, SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.lab_helpers import CHAOS, ROOT, listening, processes_mentioning, run_chaos

pytestmark = pytest.mark.lab
FLAGSHIP = ROOT / "scenarios" / "hub-down.yaml"


def journal_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "journal.json").read_text())


@pytest.mark.parametrize("engine", ["builtin", "docker", "skopeo"])
def test_hub_down_scenario_passes_end_to_end(tmp_path, engine):
    run_dir = tmp_path / "run"
    result = run_chaos("run", str(FLAGSHIP), "--run-dir", str(run_dir), "--engine", engine, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    journal = journal_of(run_dir)
    assert journal["status"] == "completed"
    steps = {s["name"]: s for s in journal["steps"]}
    assert all(s["passed"] for s in steps.values())
    assert steps["warm-alpine"]["outcome"]["details"]["engine"] == engine
    # One line per step with its verdict.
    assert result.stdout.count(" PASS ") == len(steps)

    # The story, read back from the journal rather than trusted from the verdicts.
    def result(name):
        (only,) = steps[name]["outcome"]["results"]
        return only

    assert result("warm-alpine")["served_by"] == "mirror"
    assert "library/alpine" in steps["cache-holds-public-images"]["mirror"]["stored_repositories"]
    assert result("private-pull-logged-in")["served_by"] == "hub"
    # The mirror refuses pushes: dockerd and the builtin client start an upload
    # and meet its 405; skopeo first asks HEAD for the blob, and distribution's
    # proxy, asking Hub with no push rights, answers that with 500.
    assert result("push-to-mirror-unsupported")["status"] == (500 if engine == "skopeo" else 405)
    outage_pull = steps["cached-alpine-still-pulls"]
    assert outage_pull["faults_active"] == ["hub-down"]
    assert result("cached-alpine-still-pulls")["digest"] == result("warm-alpine")["digest"]
    assert not [e for e in outage_pull["events"] if e["kind"] == "blob" and e["bytes"]]
    refused = [e for e in steps["uncached-nginx-fails"]["events"] if e.get("fault") == "hub-down"]
    assert refused, "the tap shows the outage refusing the mirror's and the client's upstream requests"
    assert "alice/private-app" not in steps["private-content-never-cached"]["mirror"]["catalog"]

    assert not processes_mentioning(str(run_dir))
    assert not listening(journal["lab"]["ports"].values())
    for component in ("hub", "auth", "proxy", "mirror", "push-registry"):
        assert (run_dir / "lab" / "logs" / f"{component}.log").exists()
    if engine == "docker":
        # The daemon really pulled (its debug log names the mirror) and left no mount or data behind.
        assert "Trying to pull" in (run_dir / "lab" / "logs" / "dockerd.log").read_text()
        assert str(run_dir) not in Path("/proc/mounts").read_text()
        assert not (run_dir / "lab" / "dockerd" / "root").exists()


def test_wrong_expectation_fails_and_names_the_step(tmp_path):
    scenario = yaml.safe_load(FLAGSHIP.read_text())
    for step in scenario["steps"]:
        if step.get("name") == "private-fails-even-logged-in":
            step["expect"] = {"ok": True}  # wrong on purpose: Hub is down
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(scenario, sort_keys=False))
    run_dir = tmp_path / "run"
    result = run_chaos("run", str(wrong), "--run-dir", str(run_dir), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    fail_lines = [line for line in result.stdout.splitlines() if " FAIL " in line]
    assert len(fail_lines) == 1 and "private-fails-even-logged-in" in fail_lines[0]
    assert "failed: private-fails-even-logged-in" in result.stdout
    journal = journal_of(run_dir)
    assert journal["status"] == "failed"
    assert not processes_mentioning(str(run_dir))


def test_component_that_cannot_start_stops_the_others(tmp_path):
    # A docker-registry that works for the hub but dies for the mirror: the
    # run must report the mirror with its log and stop hub, auth and proxy.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    wrapper = fake_bin / "docker-registry"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$2" in */mirror/*) echo "mirror: listen tcp: simulated failure" >&2; exit 1;; esac\n'
        'exec /usr/bin/docker-registry "$@"\n'
    )
    wrapper.chmod(0o755)
    run_dir = tmp_path / "run"
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    result = run_chaos("run", str(FLAGSHIP), "--run-dir", str(run_dir), cwd=tmp_path, env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "mirror exited with code 1 before it was ready" in result.stderr
    assert "simulated failure" in result.stderr
    assert not processes_mentioning(str(run_dir))
    # lab.json stays as evidence, marked stopped once the teardown completed.
    assert json.loads((run_dir / "lab" / "lab.json").read_text())["status"] == "stopped"


def test_sigint_mid_run_tears_everything_down(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*CHAOS, "run", str(FLAGSHIP), "--run-dir", str(run_dir)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    ports = {}
    try:
        deadline = time.monotonic() + 120
        output = []
        for line in proc.stdout:  # bounded by the deadline check and the process's own end
            output.append(line)
            if line.startswith("[ 1/") or line.startswith("[1/"):
                ports = json.loads((run_dir / "lab" / "lab.json").read_text())["ports"]
                proc.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, "".join(output)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert ports, "".join(output)
    assert proc.returncode == 130, "".join(output) + rest
    assert journal_of(run_dir)["status"] == "interrupted"
    assert not processes_mentioning(str(run_dir))
    assert not listening(ports.values())


@pytest.mark.parametrize("engine,missing", [("docker", "dockerd"), ("skopeo", "skopeo")])
def test_an_engine_that_cannot_run_is_one_line_exit_3_and_builtin_still_works(tmp_path, engine, missing):
    # A PATH holding docker-registry only: the engine's binary is missing.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "docker-registry").symlink_to("/usr/bin/docker-registry")
    env = {"PATH": str(fake_bin)}
    run_dir = tmp_path / "run"
    result = run_chaos("run", str(FLAGSHIP), "--run-dir", str(run_dir), "--engine", engine, cwd=tmp_path, env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    # Checked before anything starts: the error is the only thing on stderr.
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, result.stderr
    assert f"{missing} not found" in error_lines[0] and f"engine {engine} cannot run" in error_lines[0]
    assert not (run_dir / "lab" / "logs").exists()
    assert not processes_mentioning(str(run_dir))

    builtin = run_chaos("run", str(FLAGSHIP), "--run-dir", str(tmp_path / "builtin"), "--engine", "builtin", cwd=tmp_path, env=env)
    assert builtin.returncode == 0, builtin.stdout + builtin.stderr


def test_steps_choose_their_own_engine_and_the_lab_starts_what_they_need(tmp_path):
    scenario = tmp_path / "mixed.yaml"
    scenario.write_text(
        "name: mixed-engines\n"
        "lab:\n"
        "  images: [{ref: 'alpine:3.19', size: 300KB}]\n"
        "steps:\n"
        "  - {name: warm, pull: 'alpine:3.19', expect: {served_by: mirror}}\n"
        "  - {name: by-docker, pull: 'alpine:3.19', engine: docker, expect: {served_by: mirror, same_digest_as: warm}}\n"
        "  - {name: by-skopeo, pull: 'alpine:3.19', engine: skopeo, expect: {served_by: mirror, same_digest_as: warm}}\n"
    )
    run_dir = tmp_path / "run"
    result = run_chaos("run", str(scenario), "--run-dir", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = {s["name"]: s for s in journal_of(run_dir)["steps"]}
    assert [steps[n]["outcome"]["details"]["engine"] for n in ("warm", "by-docker", "by-skopeo")] == ["builtin", "docker", "skopeo"]
    # The docker step really went through the lab's daemon.
    assert "Trying to pull" in (run_dir / "lab" / "logs" / "dockerd.log").read_text()
    assert not processes_mentioning(str(run_dir))


def test_no_secret_a_run_used_is_written_to_any_file_or_shown(tmp_path):
    # Passwords of lab users, a variable marked secret, one whose name says so,
    # and one given with --var: none may appear in the run folder or the output.
    secrets = {"user": "wonderland-pw-9", "marked": "s3cr3t-token-value", "named": "hunter2-registry", "var": "from-the-command-line-77"}
    scenario = tmp_path / "secrets.yaml"
    scenario.write_text(
        "name: secrets\n"
        "variables:\n"
        f"  TOKEN_LIKE: {{default: {secrets['marked']}, secret: true}}\n"
        f"  REGISTRY_PASSWORD: {secrets['named']}\n"
        "  DEPLOY_KEY: null\n"
        "lab:\n"
        f"  users: [{{name: alice, password: {secrets['user']}}}]\n"
        "  images: [{ref: 'alice/app:1', size: 200KB, private: true}, {ref: 'alpine:3.19', size: 200KB}]\n"
        "steps:\n"
        "  - {name: private, pull: 'alice/app:1', login: alice, expect: {served_by: hub}}\n"
        "  - name: fault-with-secrets\n"
        "    fault: {name: teapot, kind: http, params: {status: 418, message: '${TOKEN_LIKE} ${REGISTRY_PASSWORD} ${DEPLOY_KEY}'},\n"
        "            match: {endpoints: [manifest], repository: 'library/*'}}\n"
        "  - {name: refused, pull: 'alpine:3.19', expect: {ok: false}}\n"
        "  - {clear: teapot}\n"
    )
    run_dir = tmp_path / "run"
    result = run_chaos("run", str(scenario), "--run-dir", str(run_dir), "--var", f"DEPLOY_KEY={secrets['var']}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = []
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{name} in {path}" for name, value in secrets.items() if value.encode() in data]
    found += [f"{name} in the output" for name, value in secrets.items() if value in result.stdout + result.stderr]
    assert not found, found
    journal = journal_of(run_dir)
    assert journal["scenario"]["variables"] == {"TOKEN_LIKE": "***", "REGISTRY_PASSWORD": "***", "DEPLOY_KEY": "***"}
    assert "***" in json.dumps(journal["steps"][1]["inputs"])
