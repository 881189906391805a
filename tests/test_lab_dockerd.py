"""The lab's private dockerd: starts on its own socket and data root, answers,
and leaves no process, mount, socket or data behind; says in one line why it
cannot run."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import docker
import pytest

from chaos.errors import EnvironmentProblem, UsageError
from chaos.lab import dockerd as dockerd_module
from chaos.lab.components.launch import INHERITED_ENV
from chaos.lab.dockerd import LabDockerd, dockerd_launch, mounts_under
from chaos.lab.lab import Lab
from chaos.lab.layout import LabPaths, choose_scratch
from chaos.lab.ports import free_port
from chaos.language.model import LabSpec
from tests.lab_helpers import processes_mentioning

pytestmark = pytest.mark.lab


@pytest.fixture
def scratch():
    """A lab's scratch folder, as Lab.start makes it: short, under /tmp."""
    folder = choose_scratch()
    folder.mkdir(mode=0o700)
    yield folder
    assert not mounts_under([folder])
    shutil.rmtree(folder, ignore_errors=True)


def make_daemon(root: Path, scratch: Path) -> LabDockerd:
    unused = f"http://127.0.0.1:{free_port()}"
    return LabDockerd(LabPaths(root, scratch), mirror_url=unused, proxy_url=unused, ca_file="/nonexistent/ca.pem")


def test_dockerd_launch_is_a_daemon_behind_the_mirror_reaching_hub_through_the_proxy(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://users-own-proxy.invalid:3128")
    exec_root = tmp_path / "hc-x"
    launch = dockerd_launch(
        binary="/usr/sbin/dockerd", config_file=tmp_path / "daemon.json", data_root=tmp_path / "root",
        exec_root=exec_root, mirror_url="http://127.0.0.1:5000", proxy_url="http://127.0.0.1:8080",
        ca_file="/lab/proxy/ca.pem", log_path=tmp_path / "dockerd.log",
    )
    assert launch.argv == (
        "/usr/sbin/dockerd", "--debug",
        "--config-file", str(tmp_path / "daemon.json"),
        "--iptables=false", "--ip-masq=false", "--bridge=none",
        "--storage-driver=vfs",
        "--data-root", str(tmp_path / "root"),
        "--exec-root", str(exec_root / "exec"),
        "--pidfile", str(exec_root / "docker.pid"),
        "-H", f"unix://{exec_root}/docker.sock",
        "--registry-mirror", "http://127.0.0.1:5000",
    )  # fmt: skip
    assert launch.env["HTTPS_PROXY"] == "http://127.0.0.1:8080"
    assert launch.env["SSL_CERT_FILE"] == "/lab/proxy/ca.pem"
    assert set(launch.env) <= set(INHERITED_ENV) | {"HTTPS_PROXY", "SSL_CERT_FILE"}
    assert (launch.name, launch.url) == ("dockerd", f"unix://{exec_root}/docker.sock")
    assert launch.ready() is False  # no socket yet


def test_the_daemon_answers_on_its_own_socket_and_leaves_nothing_behind(tmp_path, scratch, caplog):
    daemon = make_daemon(tmp_path, scratch)
    try:
        logger = logging.getLogger("chaos.lab.dockerd")
        # On the logger itself: the CLI's handler may keep "chaos" records from the root.
        logger.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.INFO, logger="chaos.lab.dockerd"):
                host = daemon.start()
        finally:
            logger.removeHandler(caplog.handler)
        assert f"starting the lab's dockerd ({host}, mirror {daemon.mirror_url})" in caplog.messages
        exec_root, data_root = daemon.exec_root, LabPaths(tmp_path, scratch).dockerd_data_root
        assert exec_root == scratch / "docker" and data_root == exec_root / "root"
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


def test_stop_is_safe_twice_and_before_start(tmp_path, scratch):
    daemon = make_daemon(tmp_path, scratch)
    assert daemon.stop() is True
    assert daemon.stop() is True


def test_not_root_is_one_line_naming_the_engine(tmp_path, scratch, monkeypatch):
    monkeypatch.setattr(dockerd_module.os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem) as caught:
        make_daemon(tmp_path, scratch).start()
    assert caught.value.exit_code == 3
    assert str(caught.value).startswith("engine docker:") and "root" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_no_dockerd_binary_says_what_to_install(tmp_path, scratch, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="dockerd not found: engine docker cannot run: install the Debian package docker.io"):
        make_daemon(tmp_path, scratch).start()


def test_a_daemon_that_dies_at_start_is_reported_with_its_log_and_cleaned_up(tmp_path, scratch):
    daemon = make_daemon(tmp_path, scratch)
    daemon.mirror_url = "not a url"  # dockerd refuses an invalid --registry-mirror
    started = []
    with pytest.raises(EnvironmentProblem) as caught:
        daemon.start(on_started=started.append)
    assert "dockerd exited" in str(caught.value) and "not a url" in str(caught.value)
    assert len(started) == 1 and started[0].identity.pid == started[0].pid  # recorded before the wait
    assert daemon.exec_root is None
    assert not processes_mentioning(str(scratch))  # every dockerd argv names its data root
    assert not LabPaths(tmp_path, scratch).dockerd_exec_root.exists()


def test_a_lab_refuses_an_engine_it_does_not_know(tmp_path):
    with pytest.raises(UsageError, match="unknown engine 'podman'"):
        Lab(LabSpec(), tmp_path, engines={"podman"})


def test_a_lab_accepts_the_containerd_engine_before_the_vocabulary_names_it(tmp_path):
    assert Lab(LabSpec(), tmp_path, engines={"containerd"}).engines == {"containerd"}

