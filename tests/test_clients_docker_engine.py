"""The docker engine: reading the daemon's progress stream and its debug log
(lines as dockerd 20.10 wrote them in the lab), and, against a real private
dockerd, a stuck pull bounded by the timeout and cancelled in the daemon.
Pulls against the whole lab are in test_engines_parity.py."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.clients.docker_engine import DockerEngine, _DaemonLog, _PullStream, _upload_errors
from chaos.errors import EnvironmentProblem
from chaos.lab.dockerd import LabDockerd
from chaos.lab.layout import LabPaths, choose_scratch
from chaos.lab.ports import free_port
from chaos.vocab.reference import parse_reference

MIRROR = "http://127.0.0.1:49485"
LIST_DIGEST = "sha256:13ae8669ff15d1ca105b33f6ce90d1136c0e70cba2a3b37c24c35e75f780f643"
AMD64_DIGEST = "sha256:2e9320203f0bfce3c79997c5b0034a2c158c1f9353c2b0a23815b98300f307a6"
DAEMON_LOG = f'''time="2026-11-28T04:52:02.63Z" level=debug msg="Trying to pull alice/private-app from http://127.0.0.1:49485/ v2"
time="2026-11-28T04:52:02.69Z" level=info msg="Attempting next endpoint for pull after error: manifest unknown: manifest unknown"
time="2026-11-28T04:52:02.69Z" level=debug msg="Trying to pull alice/private-app from https://registry-1.docker.io v2"
time="2026-11-28T04:52:02.74Z" level=debug msg="Pulling ref from V2 registry: alice/private-app:1.0"
time="2026-11-28T04:51:57.91Z" level=debug msg="Trying to pull postgres from http://127.0.0.1:49485/ v2"
time="2026-11-28T04:51:57.96Z" level=debug msg="docker.io/library/postgres:16 resolved to a manifestList object with 2 entries; looking for a unknown/amd64 match"
time="2026-11-28T04:51:57.96Z" level=debug msg="found match for linux/amd64 with media type application/vnd.docker.distribution.manifest.v2+json, digest {AMD64_DIGEST}"
'''


def daemon_log(tmp_path: Path, image: str) -> _DaemonLog:
    path = tmp_path / "dockerd.log"
    path.write_text(DAEMON_LOG)
    return _DaemonLog(path, 0, parse_reference(image))


def test_the_last_endpoint_the_daemon_tried_is_the_one_that_served(tmp_path):
    mirror, hub = daemon_log(tmp_path, "alice/private-app:1.0").attempts(MIRROR, ok=True)
    assert (mirror.endpoint, mirror.ok, mirror.error_code, mirror.message) == (
        "mirror", False, "MANIFEST_UNKNOWN", "manifest unknown: manifest unknown")
    assert (hub.endpoint, hub.ok, hub.url) == ("hub", True, "https://registry-1.docker.io")


def test_a_failed_attempt_carries_the_status_its_error_implies(tmp_path):
    mirror, _ = daemon_log(tmp_path, "alice/private-app:1.0").attempts(MIRROR, ok=True)
    assert mirror.status == 404  # distribution sends manifest unknown with 404 only


# Measured: dockerd 20.10.24 pulling from the lab mirror as a registry (engine
# docker, mirror_only): it probes https first, as for any insecure registry.
MIRROR_ONLY_LOG = """time="2026-11-29T21:24:46.54Z" level=debug msg="Trying to pull 127.0.0.1:49485/library/nope from https://127.0.0.1:49485 v2"
time="2026-11-29T21:24:46.54Z" level=info msg="Attempting next endpoint for pull after error: Get \\"https://127.0.0.1:49485/v2/\\": http: server gave HTTP response to HTTPS client"
time="2026-11-29T21:24:46.54Z" level=debug msg="Trying to pull 127.0.0.1:49485/library/nope from http://127.0.0.1:49485 v2"
time="2026-11-29T21:24:46.60Z" level=info msg="Attempting next endpoint for pull after error: manifest unknown: manifest unknown"
"""


def test_a_mirror_only_pull_is_one_mirror_attempt_without_the_https_probe(tmp_path):
    path = tmp_path / "dockerd.log"
    path.write_text(MIRROR_ONLY_LOG)
    log = _DaemonLog(path, 0, parse_reference("nope:1"), registry="127.0.0.1:49485")
    (only,) = log.attempts(MIRROR, ok=False)
    assert (only.endpoint, only.ok, only.url) == ("mirror", False, "http://127.0.0.1:49485")
    # The last attempt's error is the pull's own (the engine fills it in); none is logged here.
    assert only.error_code is None


def test_the_upload_errors_the_daemon_retried_are_read_from_its_log(tmp_path):
    path = tmp_path / "dockerd.log"
    path.write_text(
        'time="2026-11-29T21:24:47.16Z" level=error msg="Upload failed, retrying: unsupported"\n'
        'time="2026-11-29T21:24:52.17Z" level=error msg="Upload failed, retrying: unsupported"\n'
    )
    assert _upload_errors(path, 0) == ["unsupported", "unsupported"]
    assert _upload_errors(None, 0) == []


def test_log_lines_about_other_images_are_ignored(tmp_path):
    (only,) = daemon_log(tmp_path, "postgres:16").attempts(MIRROR, ok=True)
    assert only.endpoint == "mirror" and only.ok


def test_a_manifest_list_reports_the_platform_entrys_digest(tmp_path):
    assert daemon_log(tmp_path, "postgres:16").platform_digest() == AMD64_DIGEST
    assert daemon_log(tmp_path, "alice/private-app:1.0").platform_digest() is None


def test_the_stream_gives_digest_layer_bytes_and_per_layer_progress(caplog):
    stream = _PullStream(parse_reference("postgres:16"))
    caplog.set_level("INFO", logger="chaos.clients.docker_engine")
    for line in (
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "f4b5ce8cfff6"},
        {"status": "Downloading", "progressDetail": {"current": 3645, "total": 149537}, "id": "f4b5ce8cfff6"},
        {"status": "Downloading", "progressDetail": {"current": 149537, "total": 149537}, "id": "f4b5ce8cfff6"},
        {"status": "Extracting", "progressDetail": {"current": 941, "total": 941}, "id": "baae1f2a70fc"},
        {"status": "Pull complete", "progressDetail": {}, "id": "f4b5ce8cfff6"},
        {"status": f"Digest: {LIST_DIGEST}"},
    ):
        stream.feed(line)
    assert stream.digest == LIST_DIGEST
    assert stream.bytes == 149537 + 941
    shown = [record.getMessage() for record in caplog.records]
    assert shown[0] == "postgres:16 f4b5ce8cfff6: Pulling fs layer"
    assert "postgres:16 f4b5ce8cfff6: Pull complete" in shown


# -- against a real daemon ------------------------------------------------------


class _HangingMirror(http.server.BaseHTTPRequestHandler):
    """Answers the daemon's /v2/ ping, then never answers a manifest request:
    a mirror stuck mid-pull."""

    release: threading.Event

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/v2/":
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.release.wait(30)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@dataclass
class HangingMirror:
    url: str
    release: threading.Event


@pytest.fixture(scope="module")
def hanging_mirror():
    release = threading.Event()
    handler = type("Handler", (_HangingMirror,), {"release": release})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield HangingMirror(f"http://127.0.0.1:{server.server_address[1]}", release)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def lab_paths(root: Path) -> LabPaths:
    """A lab's folders, with a scratch folder as Lab.start makes it (short, under /tmp)."""
    scratch = choose_scratch()
    scratch.mkdir(mode=0o700)
    return LabPaths(root, scratch)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, hanging_mirror):
    root = tmp_path_factory.mktemp("dockerd")
    daemon = LabDockerd(lab_paths(root), mirror_url=hanging_mirror.url, proxy_url=hanging_mirror.url,
                        ca_file="/nonexistent/ca.pem")
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(daemon.paths.scratch, ignore_errors=True)


def timed_pull(engine: DockerEngine, image: str):
    """(result, seconds) of one pull; the engine is closed after it."""
    try:
        started = time.monotonic()
        result = engine.pull(parse_reference(image))
        return result, time.monotonic() - started
    finally:
        engine.close()


def engine_for(daemon: LabDockerd, timeout: float) -> DockerEngine:
    return DockerEngine(docker_host=daemon.docker_host, mirror_url=daemon.mirror_url,
                        daemon_log=daemon.paths.log("dockerd"), credentials=None, timeout=timeout)



@pytest.mark.lab
def test_a_stuck_pull_is_bounded_by_the_timeout_and_cancelled_in_the_daemon(daemon, hanging_mirror):
    log = daemon.paths.log("dockerd")
    offset = log.stat().st_size
    result, elapsed = timed_pull(engine_for(daemon, timeout=2.0), "alpine:3.19")
    assert not result.ok and result.error_code == "TIMEOUT"
    assert 1.9 <= elapsed < 4
    assert "did not finish within 2.0s" in result.message
    # dockerd 20.10 cannot abort a registry request in flight (distribution's
    # client sends them without a context); once the stuck request ends, the
    # daemon sees its client went away and gives the pull up ("Not
    # continuing"). Whether it first tries Hub depends on whether it noticed
    # the client leave before the stuck request ended (seen both ways under
    # load); either way the pull never completes.
    time.sleep(0.5)
    hanging_mirror.release.set()
    deadline = time.monotonic() + 10
    while "Not continuing with pull after error" not in (text := log.read_bytes()[offset:].decode(errors="replace")):
        assert time.monotonic() < deadline, f"the daemon never cancelled the pull:\n{text[-2000:]}"
        time.sleep(0.1)
    assert "Start untar layer" not in text  # no layer of it ever landed


@pytest.mark.lab
def test_losing_the_daemon_is_an_environment_problem(tmp_path, hanging_mirror):
    daemon = LabDockerd(lab_paths(tmp_path), mirror_url=hanging_mirror.url, proxy_url=hanging_mirror.url,
                        ca_file="/nonexistent/ca.pem")
    daemon.start()
    try:
        engine = engine_for(daemon, timeout=5.0)
    finally:
        daemon.stop()
        shutil.rmtree(daemon.paths.scratch, ignore_errors=True)
    with pytest.raises(EnvironmentProblem, match="engine docker: lost the Docker daemon"):
        engine.pull(parse_reference("alpine:3.19"))
    engine.close()


@pytest.mark.lab
def test_a_deadline_spent_before_the_pull_starts_is_a_timeout_not_a_crash(daemon):
    engine = engine_for(daemon, timeout=0.1)
    remove = engine._remove

    def slow_remove(name, deadline):
        time.sleep(0.2)  # the daemon was slow to forget the image
        remove(name, deadline + 1)

    engine._remove = slow_remove
    try:
        result = engine.pull(parse_reference("alpine:3.19"))
    finally:
        engine.close()
    assert not result.ok and result.error_code == "TIMEOUT"


@pytest.fixture
def blackhole_proxy():
    """A listening socket that never accepts: connections open (the kernel's
    backlog) and nothing is ever answered, like Hub behind a blackhole fault."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.lab
def test_a_login_hub_never_answers_is_not_fatal_and_stays_inside_the_deadline(tmp_path, blackhole_proxy, caplog):
    # The mirror refuses connections, so the daemon goes to "Hub" through a proxy that never answers.
    unused = f"http://127.0.0.1:{free_port()}"
    daemon = LabDockerd(lab_paths(tmp_path), mirror_url=unused, proxy_url=blackhole_proxy, ca_file="/nonexistent/ca.pem")
    daemon.start()
    try:
        engine = DockerEngine(docker_host=daemon.docker_host, mirror_url=unused, daemon_log=daemon.paths.log("dockerd"),
                              credentials=("alice", "wonderland"), timeout=4.0)
        with caplog.at_level("INFO", logger="chaos.clients.docker_engine"):
            result, elapsed = timed_pull(engine, "alice/private-app:1.0")
    finally:
        daemon.stop()
        shutil.rmtree(daemon.paths.scratch, ignore_errors=True)
    shown = [record.getMessage() for record in caplog.records]
    assert not result.ok and result.error_code == "TIMEOUT", result
    assert elapsed < 6
    assert any("docker login as alice got no answer" in line for line in shown), shown
