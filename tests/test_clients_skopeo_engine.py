"""The skopeo engine: its generated configuration, how it reads skopeo's own
account of a pull, and the real binary failing fast or being bounded by the
timeout. Pulls against the lab are in test_engines_parity.py."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import pytest

from chaos.clients.skopeo_engine import SkopeoEngine, _fatal_text, auth_file, registries_conf
from chaos.lab.ports import free_port
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import processes_mentioning

# Lines as skopeo 1.9.3 --debug wrote them during a private pull, logged out.
DEBUG_LOG = r'''time="2026-11-28T05:02:32Z" level=debug msg="Trying to access \"127.0.0.1:49485/alice/private-app:1.0\""
time="2026-11-28T05:02:32Z" level=debug msg="Accessing \"127.0.0.1:49485/alice/private-app:1.0\" failed: reading manifest 1.0 in 127.0.0.1:49485/alice/private-app: manifest unknown: manifest unknown"
time="2026-11-28T05:02:32Z" level=debug msg="Trying to access \"docker.io/alice/private-app:1.0\""
time="2026-11-28T05:02:32Z" level=debug msg="Accessing \"docker.io/alice/private-app:1.0\" failed: reading manifest 1.0 in docker.io/alice/private-app: errors:\ndenied: requested access to the resource is denied\nunauthorized: authentication required\n"
time="2026-11-28T05:02:32Z" level=fatal msg="initializing source docker://alice/private-app:1.0: (Mirrors also failed: [127.0.0.1:49485/alice/private-app:1.0: reading manifest 1.0 in 127.0.0.1:49485/alice/private-app: manifest unknown: manifest unknown]): docker.io/alice/private-app:1.0: reading manifest 1.0 in docker.io/alice/private-app: errors:\ndenied: requested access to the resource is denied\nunauthorized: authentication required\n"
'''


@pytest.fixture
def engine_for():
    engines = []

    def make(mirror_url="http://127.0.0.1:5000", proxy_url=None, timeout=10.0, credentials=None):
        engine = SkopeoEngine(mirror_url=mirror_url, proxy_url=proxy_url, ca_file=None, credentials=credentials,
                              timeout=timeout)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def test_registries_conf_sends_docker_io_to_the_http_mirror_first():
    text = registries_conf("http://127.0.0.1:5000")
    assert '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"' in text
    assert '[[registry.mirror]]\nlocation = "127.0.0.1:5000"\ninsecure = true' in text


def test_registries_conf_without_a_mirror_goes_to_hub_alone():
    assert "registry.mirror" not in registries_conf(None)


def test_auth_file_holds_the_login_for_docker_io_only():
    document = json.loads(auth_file(("alice", "wonderland")))
    assert list(document["auths"]) == ["docker.io"]
    assert base64.b64decode(document["auths"]["docker.io"]["auth"]) == b"alice:wonderland"
    assert json.loads(auth_file(None)) == {"auths": {}}


def test_the_auth_file_is_private(engine_for):
    engine = engine_for(credentials=("alice", "wonderland"))
    assert engine.auth_file.stat().st_mode & 0o077 == 0


def test_attempts_follow_skopeos_own_account(engine_for):
    engine = engine_for(mirror_url="http://127.0.0.1:49485")
    mirror, hub = engine._attempts(DEBUG_LOG, ok=False)
    assert (mirror.endpoint, mirror.ok, mirror.error_code) == ("mirror", False, "MANIFEST_UNKNOWN")
    assert (hub.endpoint, hub.ok, hub.error_code) == ("hub", False, "DENIED")


def test_the_fatal_line_is_kept_verbatim_unescaped():
    text = _fatal_text(DEBUG_LOG)
    assert text.startswith("initializing source docker://alice/private-app:1.0: (Mirrors also failed")
    assert "errors:\ndenied: requested access" in text


def test_nothing_listening_fails_fast_as_a_network_error(engine_for):
    engine = engine_for(mirror_url=f"http://127.0.0.1:{free_port()}", proxy_url=f"http://127.0.0.1:{free_port()}")
    result = engine.pull(parse_reference("alpine:3.19"))
    assert not result.ok
    assert result.error_code == "NETWORK", result.raw
    assert "connection refused" in result.raw and "registry-1.docker.io" in result.message
    assert [a.endpoint for a in result.attempts] == ["mirror", "hub"]
    assert result.served_by is None and result.digest is None


@pytest.fixture
def silent_server():
    """Accepts connections and never answers: a mirror that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_hanging_mirror_is_bounded_by_the_timeout_and_leaves_no_process(engine_for, silent_server):
    engine = engine_for(mirror_url=silent_server, proxy_url=silent_server, timeout=2.0)
    started = time.monotonic()
    result = engine.pull(parse_reference("alpine:3.19"))
    assert time.monotonic() - started < 6
    assert not result.ok and result.error_code == "TIMEOUT", result.raw
    assert not processes_mentioning(str(engine.workdir))
