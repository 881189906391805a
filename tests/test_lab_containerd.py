"""The lab's private containerd (engine containerd): its own root, state and
socket in the lab's scratch folder, a hosts.toml naming the lab mirror first
as a Kubernetes node's does, real pulls with ctr through it, and nothing left
behind (process, mount, socket, folder) once the lab stops."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chaos.errors import EnvironmentProblem
from chaos.lab import containerd as containerd_module
from chaos.lab.containerd import DISABLED_PLUGINS, LabContainerd, config_toml, hosts_toml
from chaos.lab.lab import Lab
from chaos.lab.layout import LabPaths, LabState
from chaos.lab.mounts import mounts_under
from chaos.language.model import LabSpec, SeedImage, User
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import processes_mentioning

ALPINE, PRIVATE = parse_reference("alpine:3.19"), parse_reference("alice/private-app:1.0")


def test_containerd_and_ctr_are_here():
    assert subprocess.run(["containerd", "--version"], capture_output=True, text=True).stdout.startswith(
        "containerd github.com/containerd/containerd 1.6")
    assert "--hosts-dir" in subprocess.run(["ctr", "images", "pull", "--help"], capture_output=True, text=True).stdout


def test_its_config_keeps_everything_under_its_folder_and_opens_no_other_listener(tmp_path):
    text = config_toml(folder=tmp_path / "c")
    assert "version = 2\n" in text
    assert f'root = "{tmp_path}/c/root"' in text and f'state = "{tmp_path}/c/state"' in text
    assert f'address = "{tmp_path}/c/containerd.sock"' in text
    assert '[debug]\n  address = ""' in text and '[metrics]\n  address = ""' in text
    assert '"io.containerd.grpc.v1.cri"' in text and all(f'"{plugin}"' in text for plugin in DISABLED_PLUGINS)


def test_its_hosts_toml_names_the_mirror_first_then_hub_through_the_proxys_ca():
    assert hosts_toml(mirror_url="http://127.0.0.1:5000", ca_file="/lab/proxy/ca.pem") == (
        'server = "https://registry-1.docker.io"\n'
        'ca = "/lab/proxy/ca.pem"\n'
        '\n[host."http://127.0.0.1:5000"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def test_not_root_is_one_line_naming_the_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(containerd_module.os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem) as caught:
        LabContainerd(LabPaths(tmp_path, tmp_path / "s"), mirror_url="http://x", ca_file="ca").start()
    assert str(caught.value).startswith("engine containerd:") and "root" in str(caught.value)
    assert "\n" not in str(caught.value) and not (tmp_path / "s").exists()


def test_no_containerd_binary_says_what_to_install(tmp_path, monkeypatch):
    # docker-registry is there, containerd is not: the lab says so before starting anything.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker-registry").symlink_to(shutil.which("docker-registry"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    lab = Lab(LabSpec(), tmp_path / "lab", engines={"containerd"})
    with pytest.raises(EnvironmentProblem, match="containerd not found: engine containerd cannot run: install the "
                                                 "Debian package containerd"):
        lab.start()
    assert not (tmp_path / "lab").exists()


def ctr_pull(state: LabState, ref: str, *extra: str) -> subprocess.CompletedProcess:
    # As the engine runs it: ctr fetches in its own process, through the client's listener.
    env = {"PATH": os.environ["PATH"], "HTTPS_PROXY": state.proxy_url}
    return subprocess.run(
        ["ctr", "--address", state.containerd_address, "images", "pull", "--hosts-dir", state.containerd_hosts_dir,
         *extra, ref], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.lab
def test_ctr_pulls_through_the_lab_mirror_and_the_daemon_leaves_nothing(tmp_path):
    spec = LabSpec(users=(User("alice", "alice-pw"),),
                   images=(SeedImage(ALPINE, 40_000, layers=1), SeedImage(PRIVATE, 40_000, layers=1, private=True)))
    with Lab(spec, tmp_path, engines={"containerd"}) as lab, ControlClient(lab.state.control_url) as control:
        state = lab.state
        folder = Path(state.scratch) / "containerd"
        assert state.containerd_address == str(folder / "containerd.sock")
        assert len(state.containerd_address + ".ttrpc") < 108  # unix socket path limit
        assert LabState.load(lab.paths.state_file).containerd_address == state.containerd_address
        assert (Path(state.containerd_hosts_dir) / "docker.io" / "hosts.toml").read_text() == hosts_toml(
            mirror_url=state.mirror_url, ca_file=state.ca_file)
        assert "containerd" in lab.state.processes
        start = control.events().next

        pulled = ctr_pull(state, "docker.io/library/alpine:3.19")
        assert pulled.returncode == 0, pulled.stderr
        # The private image: the mirror has no answer (anonymous), ctr falls back to Hub with the login.
        private = ctr_pull(state, "docker.io/alice/private-app:1.0", "--user", "alice:alice-pw")
        assert private.returncode == 0, private.stderr
        assert 'trying next host - response was http.StatusNotFound" host="127.0.0.1:' in private.stderr
        images = subprocess.run(["ctr", "--address", state.containerd_address, "images", "ls", "-q"],
                                capture_output=True, text=True, timeout=10).stdout.split()
        assert images == ["docker.io/alice/private-app:1.0", "docker.io/library/alpine:3.19"]
        origins = {(e.get("repository"), e["origin"]) for e in control.events(after=start).events}
        assert ("library/alpine", "mirror") in origins and ("alice/private-app", "client") in origins
        assert ("library/alpine", "client") not in origins
        daemon = lab.containerd.pid
        assert processes_mentioning(str(lab.paths.containerd / "config.toml")) == [
            f"{daemon}: {shutil.which('containerd')} --config {lab.paths.containerd / 'config.toml'}"
        ]
    assert lab.stopped
    assert not processes_mentioning(str(folder)) and not processes_mentioning(str(tmp_path))
    assert not mounts_under([folder, tmp_path]) and not folder.exists()
    assert not Path(state.containerd_address).exists()
