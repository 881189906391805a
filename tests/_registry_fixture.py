"""A real distribution registry (docker-registry serve) for tests, on a free
loopback port with filesystem storage in tmp, killed as a process group at
teardown. Import the `registry` (plain) or `pull_through_mirror` (proxy mode
in front of `registry`) fixtures into a test module to use them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from chaos.lab.ports import free_port

READY_DEADLINE_S = 15.0
STOP_DEADLINE_S = 5.0


@dataclass(frozen=True)
class RunningRegistry:
    host: str  # "127.0.0.1:PORT", as skopeo and docker name it
    base_url: str  # "http://127.0.0.1:PORT"
    storage: Path
    log: Path


def write_config(folder: Path, port: int, proxy_remote: str | None = None) -> Path:
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(folder / "storage")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if proxy_remote:
        # Pull-through cache mode: distribution pings the remote at start-up and
        # refuses pushes with 405 UNSUPPORTED, like a Docker Hub mirror.
        config["proxy"] = {"remoteurl": proxy_remote}
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_registry(
    folder: Path, proxy_remote: str | None = None
) -> tuple[subprocess.Popen, RunningRegistry]:
    port = free_port()
    config = write_config(folder, port, proxy_remote)
    log = folder / "registry.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = RunningRegistry(
        f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", folder / "storage", log
    )
    try:
        _wait_ready(process, running)
    except BaseException:
        stop_registry(process)
        raise
    return process, running


def stop_registry(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE_S)


def _wait_ready(process: subprocess.Popen, running: RunningRegistry) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with {process.returncode} before it was ready:\n"
                + running.log.read_text(errors="replace")[-2000:]
            )
        try:
            if requests.get(f"{running.base_url}/v2/", timeout=1.0).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise RuntimeError(
        f"docker-registry not ready on {running.host} within {READY_DEADLINE_S:g} s:\n"
        + running.log.read_text(errors="replace")[-2000:]
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> RunningRegistry:
    process, running = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield running
    finally:
        stop_registry(process)


@pytest.fixture(scope="module")
def pull_through_mirror(registry, tmp_path_factory) -> RunningRegistry:
    process, running = start_registry(tmp_path_factory.mktemp("mirror"), registry.base_url)
    try:
        yield running
    finally:
        stop_registry(process)
