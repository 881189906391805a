"""`chaos lab up|status|down` and `chaos pull` against a lab kept running
between commands, as a person poking at it by hand would use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab_helpers import ROOT, listening, processes_mentioning, run_chaos

pytestmark = pytest.mark.lab


def test_lab_up_pull_fault_and_down(tmp_path):
    lab_dir = tmp_path / "lab"
    common = ["--lab-dir", str(lab_dir)]
    up = run_chaos("lab", "up", str(ROOT / "scenarios" / "hub-down.yaml"), *common, cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "mirror         http://127.0.0.1:" in up.stdout
        state = json.loads((lab_dir / "lab.json").read_text())

        # `lab up` returned, and its components outlived it.
        status = run_chaos("lab", "status", *common, cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "DEAD" not in status.stdout

        pulled = run_chaos("pull", "alpine:3.19", "--json", *common, cwd=tmp_path)
        assert pulled.returncode == 0, pulled.stderr
        result = json.loads(pulled.stdout)
        assert result["ok"] and result["served_by"] == "mirror" and result["digest"].startswith("sha256:")

        denied = run_chaos("pull", "alice/private-app:1.0", *common, cwd=tmp_path)
        assert denied.returncode == 1
        assert "pull access denied for alice/private-app" in denied.stderr

        # This lab has no dockerd: the docker engine would be some other daemon, maybe pulling from the real Hub.
        no_daemon = run_chaos("pull", "alpine:3.19", "--engine", "docker", *common, cwd=tmp_path)
        assert no_daemon.returncode == 2 and "runs no dockerd" in no_daemon.stderr

        private = run_chaos("pull", "alice/private-app:1.0", "--login", "alice", "--json", *common, cwd=tmp_path)
        assert private.returncode == 0, private.stderr
        assert json.loads(private.stdout)["served_by"] == "hub"

        # Toggle the outage at runtime, like toxiproxy-cli.
        added = run_chaos("fault", "add", "hub-down", "--kind", "refuse", "--role", "registry", "--role", "auth", *common, cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        listed = run_chaos("fault", "list", *common, cwd=tmp_path)
        assert "hub-down" in listed.stdout and "refuse" in listed.stdout
        uncached = run_chaos("pull", "nginx:1.25", "--json", *common, cwd=tmp_path)
        assert uncached.returncode == 1
        assert json.loads(uncached.stdout)["error_code"] == "NETWORK"
        bad = run_chaos("fault", "add", "x", "--kind", "refuze", *common, cwd=tmp_path)
        assert bad.returncode == 2 and "unknown fault kind 'refuze'" in bad.stderr
        reset = run_chaos("fault", "reset", *common, cwd=tmp_path)
        assert reset.returncode == 0 and "1 fault(s) off" in reset.stdout

        tap = run_chaos("tap", "--json", *common, cwd=tmp_path)
        events = [json.loads(line) for line in tap.stdout.splitlines()]
        assert any(e["fault"] == "hub-down" for e in events)
        assert any(e["kind"] == "manifest" and e["status"] == 200 for e in events)
    finally:
        down = run_chaos("lab", "down", *common, cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert not processes_mentioning(str(lab_dir))
    assert not listening(state["ports"].values())
    assert run_chaos("lab", "status", *common, cwd=tmp_path).returncode == 1


def test_second_lab_up_in_the_same_folder_is_refused(tmp_path):
    lab_dir = tmp_path / "lab"
    first = run_chaos("lab", "up", "--lab-dir", str(lab_dir), cwd=tmp_path)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        second = run_chaos("lab", "up", "--lab-dir", str(lab_dir), cwd=tmp_path)
        assert second.returncode == 2
        assert "already running" in second.stderr
        assert run_chaos("lab", "status", "--lab-dir", str(lab_dir), cwd=tmp_path).returncode == 0  # the first is untouched
    finally:
        run_chaos("lab", "down", "--lab-dir", str(lab_dir), cwd=tmp_path)
    assert not processes_mentioning(str(lab_dir))


def test_lab_up_with_the_docker_engine_pulls_with_real_clients_and_down_cleans_the_daemon(tmp_path):
    lab_dir = tmp_path / "lab"
    common = ["--lab-dir", str(lab_dir)]
    up = run_chaos("lab", "up", str(ROOT / "scenarios" / "hub-down.yaml"), "--engine", "docker", *common, cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((lab_dir / "lab.json").read_text())
        assert state["docker_host"].startswith("unix:///tmp/hc-")
        assert f"dockerd        {state['docker_host']}" in up.stdout
        status = run_chaos("lab", "status", *common, cwd=tmp_path)
        assert status.returncode == 0 and "dockerd" in status.stdout, status.stdout

        for engine in ("docker", "skopeo"):
            pulled = run_chaos("pull", "alpine:3.19", "--engine", engine, "--json", *common, cwd=tmp_path)
            assert pulled.returncode == 0, pulled.stdout + pulled.stderr
            assert json.loads(pulled.stdout)["served_by"] == "mirror"
        denied = run_chaos("pull", "alice/private-app:1.0", "--engine", "docker", *common, cwd=tmp_path)
        assert denied.returncode == 1 and "DENIED" in denied.stderr
    finally:
        down = run_chaos("lab", "down", *common, cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    exec_root = state["docker_exec_root"]
    assert not processes_mentioning(str(lab_dir)) and not processes_mentioning(exec_root)
    mounts = Path("/proc/mounts").read_text()
    assert str(lab_dir) not in mounts and exec_root not in mounts
    assert not Path(exec_root).exists() and not (lab_dir / "dockerd" / "root").exists()
    assert not listening(state["ports"].values())
