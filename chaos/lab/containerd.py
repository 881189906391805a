"""The lab's private containerd, for the `containerd` engine: pulls as a
Kubernetes node does (containerd with a certs.d/docker.io/hosts.toml naming
the mirror first, then registry-1.docker.io), on its own root, state and
socket, sharing nothing with any containerd the machine already runs.

    containerd --config <lab>/containerd/config.toml
    ctr --address <state.containerd_address> images pull --hosts-dir <state.containerd_hosts_dir> ...

ctr fetches in its own process (it honours HTTPS_PROXY and SSL_CERT_FILE
there, not the daemon's): the engine runs it with HTTPS_PROXY set to the
fault proxy's client listener (state.proxy_url). The daemon itself needs no
proxy, only a place to store and unpack what ctr fetched.

Its config disables what a pull does not need (CRI, the runtimes, tracing,
the exotic snapshotters) and opens no debug or metrics listener. Its root,
state and socket live in the lab's scratch folder (a short /tmp/hc-* path:
unix socket paths are limited to 107 bytes). Teardown leaves nothing: the
process group is stopped, whatever is mounted below its folders is
unmounted (unpacking mounts snapshots for a moment), and the folders go.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from chaos.errors import EnvironmentProblem
from chaos.lab.binaries import require_containerd, require_ctr
from chaos.lab.components.launch import READY_DEADLINE_S, Launch, clean_env
from chaos.lab.layout import LabPaths
from chaos.lab.mounts import unmount_all
from chaos.lab.process import ManagedProcess
from chaos.vocab.hub import DOCKER_IO, REGISTRY_URL

log = logging.getLogger(__name__)

DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.runtime.v1.linux",
    "io.containerd.runtime.v2.task",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)
"""What a pull does not need; overlayfs and native snapshotters stay (ctr unpacks into one)."""


def config_toml(*, folder: Path) -> str:
    """containerd 1.6's config (version 2) for a daemon living in folder."""
    disabled = ", ".join(f'"{plugin}"' for plugin in DISABLED_PLUGINS)
    return (
        "version = 2\n"
        f'root = "{folder / "root"}"\n'
        f'state = "{folder / "state"}"\n'
        f"disabled_plugins = [{disabled}]\n"
        "\n[grpc]\n"
        f'  address = "{folder / "containerd.sock"}"\n'
        "\n[ttrpc]\n"
        f'  address = "{folder / "containerd.sock.ttrpc"}"\n'
        "\n[debug]\n"
        '  address = ""\n'
        "\n[metrics]\n"
        '  address = ""\n'
        '\n[plugins."io.containerd.internal.v1.opt"]\n'
        f'  path = "{folder / "opt"}"\n'
    )


def hosts_toml(*, mirror_url: str, ca_file: str) -> str:
    """certs.d/docker.io/hosts.toml as on a Kubernetes node: the mirror first
    (pull and resolve), then registry-1.docker.io trusting the fault proxy's CA."""
    return (
        f'server = "{REGISTRY_URL}"\n'
        f'ca = "{ca_file}"\n'
        f'\n[host."{mirror_url}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def containerd_launch(*, binary: str, ctr: str, config_file: Path, folder: Path, log_path: Path) -> Launch:
    socket_path = folder / "containerd.sock"
    argv = (binary, "--config", str(config_file))
    return Launch("containerd", argv, lambda: _answers(ctr, socket_path), log_path, url=str(socket_path),
                  env=clean_env())


class LabContainerd:
    def __init__(self, paths: LabPaths, *, mirror_url: str, ca_file: str, detached: bool = False):
        """paths: the lab's, with its scratch folder (root, state, socket go
        there). mirror_url, ca_file: what the generated hosts.toml names.
        detached: the daemon outlives this process (`chaos lab up`)."""
        self.paths = paths
        self.mirror_url = mirror_url
        self.ca_file = ca_file
        self.detached = detached
        self.process: ManagedProcess | None = None

    @property
    def folder(self) -> Path:
        return self.paths.containerd_scratch

    @property
    def address(self) -> str:
        """The socket ctr talks to (ctr --address)."""
        return str(self.folder / "containerd.sock")

    @property
    def hosts_dir(self) -> str:
        """The folder ctr --hosts-dir reads DOCKER_IO/hosts.toml from."""
        return str(self.paths.containerd / "certs.d")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, on_started: Callable[[ManagedProcess], None] | None = None) -> str:
        """Start the daemon and wait until ctr gets an answer; returns its
        address. EnvironmentProblem (one line) when it cannot run here.
        on_started: called with the process as soon as it runs."""
        binary, ctr = can_run()
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.paths.containerd / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(config_toml(folder=self.folder))
        hosts = Path(self.hosts_dir) / DOCKER_IO / "hosts.toml"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(hosts_toml(mirror_url=self.mirror_url, ca_file=self.ca_file))
        launch = containerd_launch(binary=binary, ctr=ctr, config_file=config, folder=self.folder,
                                   log_path=self.paths.log("containerd"))
        log.info("starting the lab's containerd (%s, hosts.toml naming mirror %s)", self.address, self.mirror_url)
        self.process = launch.process(tie_to_parent=not self.detached)
        try:
            self.process.start()
            if on_started is not None:
                on_started(self.process)
            self.process.wait_ready(launch.ready, READY_DEADLINE_S)
        except BaseException:
            self.stop()
            raise
        return self.address

    def stop(self) -> bool:
        """Stop the daemon and remove its folders; safe to call twice. True
        when nothing of it is left (no process, no mount)."""
        gone = True
        if self.process is not None:
            gone = self.process.stop(grace_s=10.0)
            self.process = None
        return cleanup(self.folder) and gone


def can_run() -> tuple[str, str]:
    """The containerd and ctr binaries, or EnvironmentProblem (one line) when
    the lab cannot run its containerd here; asked before anything starts."""
    binary, ctr = require_containerd(), require_ctr()
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "engine containerd: the lab's containerd must run as root (run as root, or use --engine builtin)"
        )
    return binary, ctr


def cleanup(folder: Path) -> bool:
    """What a stopped (or killed) lab containerd may leave below its folder:
    mounts, sockets, content. True when nothing is left."""
    folder = Path(folder)
    still_mounted = unmount_all([folder])
    if still_mounted:
        # Never delete through a mount: it may show files that are not ours.
        log.warning("left %s in place: still mounted there: %s", folder, ", ".join(still_mounted))
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def _answers(ctr: str, socket_path: Path) -> bool:
    """The socket accepts a connection and ctr gets the daemon's version."""
    if not socket_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect(str(socket_path))
    done = subprocess.run(
        [ctr, "--address", str(socket_path), "--timeout", "2s", "version"],
        capture_output=True, timeout=5, env=clean_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.returncode == 0
