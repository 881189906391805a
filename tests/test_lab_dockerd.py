"""The lab's private dockerd: starts on its own socket and data root, answers,
and leaves no process, mount, socket or data behind; says in one line why it
cannot run."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from chaos.errors import EnvironmentProblem, UsageError
from chaos.lab import dockerd as dockerd_module
from chaos.lab.dockerd import LabDockerd, mounts_under
from chaos.lab.lab import Lab
from chaos.lab.layout import LabPaths
from chaos.lab.ports import free_port
from chaos.scenario.model import LabSpec
from tests.lab_helpers import processes_mentioning

pytestmark = pytest.mark.lab


def make_daemon(root: Path) -> LabDockerd:
    unused = f"http://127.0.0.1:{free_port()}"
    return LabDockerd(LabPaths(root), mirror_url=unused, proxy_url=unused, ca_file="/nonexistent/ca.pem")


def test_the_daemon_answers_on_its_own_socket_and_leaves_nothing_behind(tmp_path):
    daemon = make_daemon(tmp_path)
    try:
        host = daemon.start()
        exec_root, data_root = daemon.exec_root, LabPaths(tmp_path).dockerd_data_root
        assert host == f"unix://{exec_root}/docker.sock"
        assert len(str(exec_root / "exec" / "containerd" / "containerd.sock.ttrpc")) < 108  # unix socket limit
        client = docker.APIClient(base_url=host, version="auto", timeout=10)
        try:
            assert client.ping()
            info = client.info()
        finally:
            client.close()
        assert info["Driver"] == "vfs"
        assert info["DockerRootDir"] == str(data_root)
        assert info["RegistryConfig"]["Mirrors"] == [daemon.mirror_url + "/"]
        assert processes_mentioning(str(exec_root))  # dockerd and its containerd
    finally:
        daemon.stop()
    assert not processes_mentioning(str(exec_root))
    assert not mounts_under([data_root, exec_root])
    assert not exec_root.exists() and not data_root.exists()


def test_stop_is_safe_twice_and_before_start(tmp_path):
    daemon = make_daemon(tmp_path)
    daemon.stop()
    daemon.stop()


def test_not_root_is_one_line_naming_the_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(dockerd_module.os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem) as caught:
        make_daemon(tmp_path).start()
    assert caught.value.exit_code == 3
    assert str(caught.value).startswith("engine docker:") and "root" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_no_dockerd_binary_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="dockerd not found: engine docker cannot run: install the Debian package docker.io"):
        make_daemon(tmp_path).start()


def test_a_daemon_that_dies_at_start_is_reported_with_its_log_and_cleaned_up(tmp_path):
    daemon = make_daemon(tmp_path)
    daemon.mirror_url = "not a url"  # dockerd refuses an invalid --registry-mirror
    with pytest.raises(EnvironmentProblem) as caught:
        daemon.start()
    assert "dockerd exited" in str(caught.value) and "not a url" in str(caught.value)
    assert daemon.exec_root is None
    assert not processes_mentioning(str(tmp_path))  # every dockerd argv names its data root
    assert not LabPaths(tmp_path).dockerd_data_root.exists()


def test_a_lab_refuses_an_engine_it_does_not_know(tmp_path):
    with pytest.raises(UsageError, match="unknown engine 'podman'"):
        Lab(LabSpec(), tmp_path, engines={"podman"})

