"""The lab's private Docker daemon, for the `docker` engine: a real dockerd
configured exactly like a production daemon behind a mirror, on its own socket
and data root, sharing nothing with any daemon the machine already runs.

    dockerd --registry-mirror <lab mirror>   (HTTPS_PROXY=<fault proxy>, SSL_CERT_FILE=<its CA>)

Its mirror is plain HTTP on 127.0.0.1, which dockerd accepts without
--insecure-registry (127.0.0.0/8 is insecure by default). Go never proxies
loopback, so only the fallback to registry-1.docker.io goes through the fault
proxy, which routes it to the lab hub. The daemon runs with --debug: its
"Trying to pull X from <endpoint>" lines are how the docker engine learns which
endpoint served a pull.

Teardown leaves nothing: dockerd gets SIGTERM (it stops the containerd it
started, which lives in a session of its own), then any containerd still
alive is killed, whatever is mounted under the data root or exec root is
unmounted (vfs needs no overlay mounts, only dockerd's own private bind
mounts), and the exec root with its sockets is removed. The data root goes
too: vfs copies every layer in full and a run folder must not keep them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from chaos.errors import EnvironmentProblem
from chaos.lab.binaries import require_dockerd
from chaos.lab.components.launch import READY_DEADLINE_S, Launch, clean_env
from chaos.lab.layout import LabPaths
from chaos.lab.mounts import mounts_under, unmount_all
from chaos.lab.process import ManagedProcess, stop_group

__all__ = ["LabDockerd", "can_run", "cleanup", "dockerd_launch", "mounts_under"]
log = logging.getLogger(__name__)


def dockerd_launch(
    *,
    binary: str,
    config_file: Path,
    data_root: Path,
    exec_root: Path,
    mirror_url: str,
    proxy_url: str,
    ca_file: str,
    log_path: Path,
) -> Launch:
    """exec_root: a short folder of its own (its API socket lives there, and
    unix socket paths are limited to 107 bytes)."""
    socket_path = exec_root / "docker.sock"
    argv = (
        binary, "--debug",
        "--config-file", str(config_file),
        "--iptables=false", "--ip-masq=false", "--bridge=none",
        "--storage-driver=vfs",
        "--data-root", str(data_root),
        "--exec-root", str(exec_root / "exec"),
        "--pidfile", str(exec_root / "docker.pid"),
        "-H", f"unix://{socket_path}",
        "--registry-mirror", mirror_url,
    )  # fmt: skip
    env = clean_env({"HTTPS_PROXY": proxy_url, "SSL_CERT_FILE": ca_file})
    return Launch("dockerd", argv, lambda: _api_answers(socket_path), log_path, url=f"unix://{socket_path}", env=env)


class LabDockerd:
    def __init__(
        self,
        paths: LabPaths,
        *,
        mirror_url: str,
        proxy_url: str,
        ca_file: str,
        detached: bool = False,
    ):
        """paths: the lab's, with its scratch folder (the daemon's exec root
        and data root go there). detached: the daemon outlives this process
        (`chaos lab up`)."""
        self.paths = paths
        self.mirror_url = mirror_url
        self.proxy_url = proxy_url
        self.ca_file = ca_file
        self.detached = detached
        self.process: ManagedProcess | None = None
        self.exec_root: Path | None = None

    @property
    def socket_path(self) -> Path:
        assert self.exec_root is not None, "start() first"
        return self.exec_root / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, on_started: Callable[[ManagedProcess], None] | None = None) -> str:
        """Start the daemon and wait until its API answers; returns DOCKER_HOST.
        EnvironmentProblem (one line) when it cannot run here. on_started:
        called with the process as soon as it runs (the lab records it then,
        before waiting for it)."""
        binary = can_run()
        # In the lab's fresh scratch folder, so the socket can never be one another daemon uses.
        self.exec_root = self.paths.dockerd_exec_root
        data_root = self.paths.dockerd_data_root
        data_root.mkdir(parents=True, exist_ok=True)
        # An empty config file: /etc/docker/daemon.json (mirrors, storage...) must
        # neither change this daemon nor clash with its flags.
        config = self.paths.dockerd / "daemon.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({}))
        launch = dockerd_launch(
            binary=binary, config_file=config, data_root=data_root, exec_root=self.exec_root,
            mirror_url=self.mirror_url, proxy_url=self.proxy_url, ca_file=self.ca_file,
            log_path=self.paths.log("dockerd"),
        )
        log.info("starting the lab's dockerd (%s, mirror %s)", self.docker_host, self.mirror_url)
        self.process = launch.process(tie_to_parent=not self.detached)
        try:
            self.process.start()
            if on_started is not None:
                on_started(self.process)
            self.process.wait_ready(launch.ready, READY_DEADLINE_S)
        except BaseException:
            self.stop()
            raise
        return self.docker_host

    def stop(self) -> bool:
        """Stop the daemon and remove every trace of it; safe to call twice.
        True when nothing of it is left (no process, no mount)."""
        containerd = _containerd_pid(self.exec_root)
        gone = True
        if self.process is not None:
            gone = self.process.stop(grace_s=10.0)
            self.process = None
        clean = cleanup(self.paths.dockerd_data_root, self.exec_root, containerd_pid=containerd)
        self.exec_root = None
        return gone and clean


def can_run() -> str:
    """The dockerd binary, or EnvironmentProblem (one line) when the lab cannot
    run one here; the lab asks before it starts anything."""
    binary = require_dockerd()
    if os.geteuid() != 0:
        raise EnvironmentProblem("engine docker: the lab's dockerd must run as root (run as root, or use --engine builtin)")
    return binary


def cleanup(data_root: Path, exec_root: Path | None, *, containerd_pid: int | None = None) -> bool:
    """What a stopped (or killed) lab dockerd may leave: its containerd, mounts
    under its roots, its sockets and data. Also for `chaos lab down`, which
    finds exec_root in lab.json. True when nothing is left."""
    if containerd_pid is None:
        containerd_pid = _containerd_pid(exec_root)
    gone = True
    if containerd_pid and exec_root is not None and _mentions(containerd_pid, str(exec_root)):
        # dockerd starts containerd with setsid: it leads a group of its own.
        gone = stop_group(containerd_pid)
    still_mounted = unmount_all([Path(data_root)] + ([Path(exec_root)] if exec_root else []))
    if still_mounted:
        # Never delete through a mount: it may show files that are not ours.
        log.warning("left %s in place: still mounted there: %s", exec_root or data_root, ", ".join(still_mounted))
        return False
    if exec_root is not None:
        shutil.rmtree(exec_root, ignore_errors=True)
    shutil.rmtree(data_root, ignore_errors=True)
    return gone


def _containerd_pid(exec_root: Path | None) -> int | None:
    if exec_root is None:
        return None
    try:
        return int((Path(exec_root) / "exec" / "containerd" / "containerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _mentions(pid: int, text: str) -> bool:
    # The pid file may be stale and the pid reused: only kill what is ours.
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def _api_answers(path: Path) -> bool:
    """GET /_ping over the unix socket answers OK."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect(str(path))
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        answer = sock.recv(64)
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer
