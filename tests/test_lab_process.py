"""Managed child processes: readiness with a deadline, early death reported
with the log tail, the whole process group stopped, also by a with-block;
launches with a clean environment; and the lab as a whole as a context
manager (started on enter, stopped on exit unless left running), reporting
its progress through logging."""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from chaos.errors import ComponentFailed, EnvironmentProblem
from chaos.lab.components.launch import INHERITED_ENV, Launch, clean_env, http_answers
from chaos.lab.dockerd import LabDockerd
from chaos.lab.lab import Lab
from chaos.lab.layout import LabPaths, LabState
from chaos.lab.process import ManagedProcess, group_alive, require_binary
from chaos.lab.seed import Seeder
from chaos.language.model import LabSpec, SeedImage
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import listening, processes_mentioning


def test_child_that_dies_early_is_reported_with_its_log(tmp_path):
    proc = ManagedProcess("broken", ["sh", "-c", "echo 'bind: address already in use'; exit 7"], tmp_path / "broken.log")
    proc.start()
    with pytest.raises(ComponentFailed) as caught:
        proc.wait_ready(lambda: False, deadline_s=10)
    assert "broken exited with code 7 before it was ready" in str(caught.value)
    assert "address already in use" in str(caught.value)


def test_readiness_deadline_is_bounded(tmp_path):
    proc = ManagedProcess("slow", ["sleep", "60"], tmp_path / "slow.log")
    proc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ComponentFailed, match="slow was not ready within 0.5s"):
            proc.wait_ready(lambda: False, deadline_s=0.5)
        assert time.monotonic() - started < 5
    finally:
        proc.stop()
    assert not proc.alive()


def test_ready_check_exceptions_mean_not_yet(tmp_path):
    proc = ManagedProcess("flaky", ["sleep", "60"], tmp_path / "flaky.log")
    proc.start()
    calls = []

    def check():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not listening yet")
        return True

    try:
        proc.wait_ready(check, deadline_s=10)
        assert len(calls) == 3
    finally:
        proc.stop()


def test_stop_kills_the_whole_group_including_grandchildren(tmp_path):
    # The grandchild ignores SIGTERM, so only a group SIGKILL after the grace period ends it.
    script = "trap '' TERM; sleep 60 & wait"
    proc = ManagedProcess("tree", ["sh", "-c", script], tmp_path / "tree.log")
    proc.start()
    time.sleep(0.2)
    pgid = proc.pid
    assert group_alive(pgid)
    proc.stop(grace_s=0.5)
    assert not group_alive(pgid)


def test_missing_binary_is_an_environment_problem():
    with pytest.raises(EnvironmentProblem, match="no-such-binary-xyz not found: install it"):
        require_binary("no-such-binary-xyz", "install it")


def test_a_go_panic_cause_is_kept_above_its_goroutine_dump(tmp_path):
    from chaos.lab.process import log_tail

    log = tmp_path / "mirror.log"
    dump = "\n".join(f"\tgithub.com/docker/distribution/x.go:{n}" for n in range(40))
    log.write_text('panic: Get "https://registry-1.docker.io/v2/": Bad Gateway\n\ngoroutine 1 [running]:\n' + dump)
    tail = log_tail(log)
    assert tail.splitlines()[0].strip().startswith("panic: Get")
    assert "x.go:39" in tail


# -- with-blocks ---------------------------------------------------------------


def test_a_with_block_gives_the_process_itself_and_stops_it_on_a_normal_exit(tmp_path):
    process = ManagedProcess("sleeper", ["sleep", "60"], tmp_path / "sleeper.log")
    with process as entered:
        assert entered is process
        entered.start()
        pgid = entered.pid
        assert group_alive(pgid)
    assert not group_alive(pgid)
    assert not process.alive()


def test_a_with_block_stops_the_process_when_readiness_fails(tmp_path):
    with pytest.raises(ComponentFailed), ManagedProcess("never-ready", ["sleep", "60"], tmp_path / "never.log") as process:
        process.start()
        pgid = process.pid
        process.wait_ready(lambda: False, deadline_s=0.3)
    assert not group_alive(pgid)


def test_a_with_block_around_a_process_never_started_is_harmless(tmp_path):
    with ManagedProcess("idle", ["sleep", "60"], tmp_path / "idle.log") as process:
        pass
    assert process.pid is None


# -- launches --------------------------------------------------------------------


def test_a_launch_runs_its_child_with_the_clean_environment_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://users-own-proxy.invalid:3128")
    monkeypatch.setenv("SOME_SECRET", "leaked")
    launch = Launch("env", ("sh", "-c", "env; sleep 60"), lambda: True, tmp_path / "env.log",
                    env=clean_env({"SSL_CERT_FILE": "/lab/ca.pem"}))
    with launch.process() as process:
        process.start()
        process.wait_ready(lambda: "SSL_CERT_FILE=" in launch.log_path.read_text(), deadline_s=10)
    seen = dict(line.split("=", 1) for line in launch.log_path.read_text().splitlines() if "=" in line)
    assert seen["SSL_CERT_FILE"] == "/lab/ca.pem"
    assert seen["PATH"] == os.environ["PATH"]
    assert "HTTPS_PROXY" not in seen and "SOME_SECRET" not in seen
    # sh adds PWD (and may add SHLVL, _): nothing else beyond what a launch passes.
    assert set(seen) - {"PWD", "SHLVL", "_"} <= set(INHERITED_ENV) | {"SSL_CERT_FILE"}


def test_a_launch_defaults_to_the_clean_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("LANG", "C.UTF-8")
    launch = Launch("x", ("true",), lambda: True, tmp_path / "x.log")
    assert launch.env["LANG"] == "C.UTF-8"
    assert "NO_PROXY" not in launch.env
    assert launch.process(tie_to_parent=False).tie_to_parent is False


class _Unauthorized(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


def test_http_answers_is_ready_on_any_status_but_not_on_no_answer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        # The hub answers /v2/ with 401 until a client has a token: that is up.
        assert http_answers(f"http://127.0.0.1:{server.server_address[1]}/v2/")() is True
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(requests.ConnectionError):
        http_answers(f"http://127.0.0.1:{server.server_address[1]}/v2/")()


# -- the lab ---------------------------------------------------------------------

TINY = parse_reference("alpine:3.19")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.name, record.levelno, record.getMessage()))


@contextmanager
def lab_log():
    """INFO records of the "chaos.lab" loggers, whatever handlers the CLI may have set up."""
    logger, handler = logging.getLogger("chaos.lab"), _Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def small_lab(root: Path) -> Lab:
    return Lab(LabSpec(images=(SeedImage(TINY, 50_000, layers=1),)), root)


def assert_nothing_left(root: Path, ports, scratch: str) -> None:
    assert not processes_mentioning(str(root)) and not processes_mentioning(scratch)
    assert not listening(ports)
    assert not Path(scratch).exists()
    # lab.json stays as evidence, saying the stop completed.
    assert LabState.load(LabPaths(root).state_file).status == "stopped"


@pytest.mark.lab
def test_a_lab_with_block_starts_it_logs_its_progress_and_stops_everything(tmp_path):
    with lab_log() as messages, small_lab(tmp_path) as lab:
        assert isinstance(lab.state, LabState)
        ports = list(lab.state.ports.values())
        assert requests.get(f"{lab.state.mirror_url}/v2/", timeout=5).ok
        assert set(lab.components) == {"hub", "auth", "cdn", "proxy", "mirror"}
        assert all(process.alive() for process in lab.components.values())
        assert LabState.load(LabPaths(tmp_path).state_file).status == "running"
        assert not lab.stopped
    assert lab.stopped
    assert_nothing_left(tmp_path, ports, lab.state.scratch)
    assert ("chaos.lab.lab", logging.INFO, "starting lab hub (registry + auth.docker.io emulation)") in messages
    assert ("chaos.lab.seed", logging.INFO, "seeding hub with alpine:3.19 (50 kB, linux/amd64)") in messages
    assert messages[-1] == (
        "chaos.lab.lab", logging.INFO, f"lab ready: mirror {lab.state.mirror_url}, fault proxy {lab.state.proxy_url}"
    )


@pytest.mark.lab
def test_a_lab_left_running_survives_a_normal_exit_until_stopped(tmp_path):
    lab = small_lab(tmp_path)
    try:
        with lab:
            lab.leave_running()
        assert not lab.stopped
        ports = list(lab.state.ports.values())
        assert sorted(listening(ports)) == sorted(ports)
        assert LabState.load(LabPaths(tmp_path).state_file).mirror_url == lab.state.mirror_url
        assert requests.get(f"{lab.state.mirror_url}/v2/", timeout=5).ok
    finally:
        lab.stop()
    assert_nothing_left(tmp_path, ports, lab.state.scratch)
    lab.stop()  # safe twice
    assert lab.stopped


@pytest.mark.lab
@pytest.mark.parametrize("raised", [RuntimeError, KeyboardInterrupt])
def test_an_exception_stops_a_lab_even_when_left_running(tmp_path, raised):
    with pytest.raises(raised), small_lab(tmp_path) as lab:
        lab.leave_running()
        ports = list(lab.state.ports.values())
        assert listening(ports)
        raise raised()
    assert lab.stopped
    assert_nothing_left(tmp_path, ports, lab.state.scratch)


@pytest.mark.lab
def test_a_missing_engine_binary_is_one_line_before_anything_starts(tmp_path, monkeypatch):
    # docker-registry is there, skopeo is not: the lab must say so before starting the hub.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker-registry").symlink_to(shutil.which("docker-registry"))
    monkeypatch.setenv("PATH", str(bin_dir))
    lab = Lab(LabSpec(), tmp_path / "lab", engines={"skopeo"})
    with pytest.raises(EnvironmentProblem) as caught, lab:
        pass
    assert str(caught.value).startswith("skopeo not found: engine skopeo cannot run: install the Debian package skopeo")
    assert "\n" not in str(caught.value)
    assert not lab.components and not (tmp_path / "lab" / "logs").exists()


def test_progress_is_logged_not_passed_in():
    for component in (Lab, LabDockerd, Seeder):
        assert "progress" not in inspect.signature(component).parameters, component
    assert list(inspect.signature(Lab).parameters) == ["spec", "root", "detached", "engines", "mirror", "registry_binary"]
