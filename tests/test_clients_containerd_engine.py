"""The containerd engine: its hosts.toml, reading ctr's --debug account (lines
as ctr 1.6.20 wrote them against the lab), one-line errors when it cannot
run, and pulls through a containerd this module starts itself (its own root,
state and socket under a short /tmp folder) from an in-process registry.
Pulls against the whole lab are in test_engines_parity.py."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from chaos.clients.containerd_engine import ContainerdEngine, _Account, hosts_toml
from chaos.clients.engines import make_engine
from chaos.errors import EnvironmentProblem
from chaos.lab.dockerd import mounts_under
from chaos.lab.layout import LabState
from chaos.vocab.names import ENGINES
from chaos.vocab.reference import parse_reference
from tests._fake_registry import FakeRegistry, build_image, closed_port
from tests.lab_helpers import processes_mentioning

MIRROR = "http://127.0.0.1:44705"
ALPINE = parse_reference("alpine:3.19")
AMD64 = "sha256:173c62c756f1408484835d0976af7f064761771081d9e89bfcd92bff576dbc5b"


def _line(msg: str, **fields: str) -> str:
    """A line as logrus's text formatter writes it (quoted values JSON-escaped)."""
    rest = " ".join(f"{key}={json.dumps(value)}" if " " in value or '"' in value else f"{key}={value}"
                    for key, value in fields.items())
    return f'time="2026-11-29T21:13:47Z" level=debug msg="{msg}" {rest}'


def _request(url: str, method: str = "GET", **extra: str) -> str:
    return _line("do request", **{"request.method": method, "url": url, **extra})


def _answer(url: str, status: str, **extra: str) -> str:
    return _line("fetch response received", **{"response.status": status, "url": url, **extra})


PRIVATE_LOGGED_OUT = "\n".join([
    _request(f"{MIRROR}/v2/alice/private-app/manifests/1.0?ns=docker.io", "HEAD"),
    _answer(f"{MIRROR}/v2/alice/private-app/manifests/1.0?ns=docker.io", "404 Not Found"),
    'time="2026-11-29T21:13:47Z" level=info msg="trying next host - response was http.StatusNotFound" host="127.0.0.1:44705"',
    _request("https://registry-1.docker.io/v2/alice/private-app/manifests/1.0", "HEAD"),
    _answer("https://registry-1.docker.io/v2/alice/private-app/manifests/1.0", "401 Unauthorized"),
    _request("https://registry-1.docker.io/v2/alice/private-app/manifests/1.0", "HEAD"),
    _answer("https://registry-1.docker.io/v2/alice/private-app/manifests/1.0", "401 Unauthorized",
            **{"response.header.www-authenticate": 'Bearer realm="https://auth.docker.io/token",error="insufficient_scope"'}),
    'time="2026-11-29T21:13:47Z" level=info msg="trying next host" error="pull access denied, repository does not exist '
    'or may require authorization: server message: insufficient_scope: authorization failed" host=registry-1.docker.io',
    'ctr: failed to resolve reference "docker.io/alice/private-app:1.0": pull access denied, repository does not exist '
    "or may require authorization: server message: insufficient_scope: authorization failed",
])

MULTI_ARCH_FROM_MIRROR = "\n".join([
    _request(f"{MIRROR}/v2/library/postgres/manifests/16?ns=docker.io", "HEAD"),
    _answer(f"{MIRROR}/v2/library/postgres/manifests/16?ns=docker.io", "200 OK"),
    _request(f"{MIRROR}/v2/library/postgres/manifests/sha256:34f4?ns=docker.io", digest="sha256:34f4",
             mediatype="application/vnd.docker.distribution.manifest.list.v2+json", size="770"),
    _answer(f"{MIRROR}/v2/library/postgres/manifests/sha256:34f4?ns=docker.io", "200 OK"),
    _request(f"{MIRROR}/v2/library/postgres/manifests/{AMD64}?ns=docker.io", digest=AMD64,
             mediatype="application/vnd.docker.distribution.manifest.v2+json", size="734"),
    _answer(f"{MIRROR}/v2/library/postgres/manifests/{AMD64}?ns=docker.io", "200 OK"),
    _request(f"{MIRROR}/v2/library/postgres/blobs/sha256:05e8?ns=docker.io", digest="sha256:05e8",
             mediatype="application/vnd.docker.image.rootfs.diff.tar.gzip", size="99868"),
    _answer(f"{MIRROR}/v2/library/postgres/blobs/sha256:05e8?ns=docker.io", "500 Internal Server Error"),
    _request("https://registry-1.docker.io/v2/library/postgres/blobs/sha256:05e8", digest="sha256:05e8",
             mediatype="application/vnd.docker.image.rootfs.diff.tar.gzip", size="99868"),
    _answer("https://registry-1.docker.io/v2/library/postgres/blobs/sha256:05e8", "200 OK"),
])


def test_hosts_toml_names_the_mirror_first_then_hub_trusting_the_proxy_ca():
    assert hosts_toml("http://127.0.0.1:5000/", "/lab/proxy/ca.pem").splitlines()[1:] == [
        'server = "https://registry-1.docker.io"',
        'ca = "/lab/proxy/ca.pem"',
        "",
        '[host."http://127.0.0.1:5000"]',
        '  capabilities = ["pull", "resolve"]',
    ]
    assert "[host." not in hosts_toml(None, None)


def test_each_host_is_one_attempt_with_its_own_answer():
    mirror, hub = _Account.parse(PRIVATE_LOGGED_OUT, "127.0.0.1:44705").attempts(MIRROR, ok=False)
    assert (mirror.endpoint, mirror.ok, mirror.status, mirror.error_code) == ("mirror", False, 404, "MANIFEST_UNKNOWN")
    assert mirror.message == f'HEAD "{MIRROR}/v2/alice/private-app/manifests/1.0?ns=docker.io": 404 Not Found'
    # A 401 whose challenge says insufficient_scope is a denial, as distribution reads it.
    assert (hub.endpoint, hub.status, hub.error_code) == ("hub", 401, "DENIED")


def test_a_host_that_failed_one_blob_failed_even_if_it_served_the_manifest():
    account = _Account.parse(MULTI_ARCH_FROM_MIRROR, "127.0.0.1:44705")
    mirror, hub = account.attempts(MIRROR, ok=True)
    assert (mirror.ok, mirror.status, mirror.error_code) == (False, 500, "BAD_RESPONSE")
    assert (hub.ok, hub.status) == (True, 200)
    # served_by and digest: who delivered the platform image manifest, and its digest.
    assert account.platform_manifest("127.0.0.1:44705") == ("mirror", AMD64)
    assert account.bytes == 770 + 734 + 99868


def test_a_request_still_waiting_is_what_a_timed_out_pull_names():
    text = _request(f"{MIRROR}/v2/library/alpine/manifests/3.19?ns=docker.io", "HEAD")
    account = _Account.parse(text, "127.0.0.1:44705")
    assert account.pending() == f'HEAD "{MIRROR}/v2/library/alpine/manifests/3.19?ns=docker.io"'
    (mirror,) = account.attempts(MIRROR, ok=False, timed_out=True)
    assert (mirror.error_code, mirror.status) == ("TIMEOUT", None)


def test_containerd_is_an_engine_make_engine_knows():
    assert "containerd" in ENGINES


def test_ctr_missing_is_an_environment_problem_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ctr on it
    with pytest.raises(EnvironmentProblem) as caught:
        make_engine("containerd", lab=LabState(root=str(tmp_path), mirror_url=MIRROR), credentials=None, timeout=5)
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert "engine containerd cannot run" in message and "apt-get install containerd" in message


def test_no_containerd_at_the_address_is_an_environment_problem_in_one_line(tmp_path):
    lab = LabState(root=str(tmp_path), mirror_url=MIRROR)
    lab.containerd_address = str(tmp_path / "containerd.sock")
    with pytest.raises(EnvironmentProblem) as caught:
        make_engine("containerd", lab=lab, credentials=None, timeout=5)
    message = str(caught.value)
    assert message.startswith("engine containerd cannot run: no containerd answers at ") and str(tmp_path) in message
    assert "\n" not in message and caught.value.exit_code == 3


# -- against a real containerd ---------------------------------------------------


class OwnContainerd:
    """A containerd of this module's own: root, state and socket in a short
    /tmp folder, its own process group, nothing left when stopped."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="hc-ctd-", dir="/tmp"))
        self.address = str(self.folder / "containerd.sock")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.folder / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.folder}/root"\nstate = "{self.folder}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",'
            ' "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",'
            ' "io.containerd.snapshotter.v1.devmapper"]\n'
            f'[grpc]\n  address = "{self.address}"\n[ttrpc]\n  address = "{self.address}.ttrpc"\n'
            '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
            # Content in another namespace must not hide a download.
            '[plugins."io.containerd.metadata.v1.bolt"]\n  content_sharing_policy = "isolated"\n'
        )
        with open(self.folder / "containerd.log", "wb") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / "containerd.log").read_text(errors="replace")[-1500:]
                self.stop()
                pytest.fail(f"containerd did not start:\n{tail}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        if not Path(self.address).exists():
            return False
        done = subprocess.run(["ctr", "--address", self.address, "--timeout", "2s", "version"],
                              capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        return done.returncode == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        for point in mounts_under([self.folder]):
            libc.umount2(point.encode(), 2)  # MNT_DETACH
        shutil.rmtree(self.folder, ignore_errors=True)


# A private containerd needs root (its snapshotter mounts); the binaries
# themselves `make test` installs, so their absence fails the tests instead.
needs_containerd = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: containerd's snapshotter mounts")


@pytest.fixture(scope="module")
def containerd():
    for program in ("containerd", "ctr"):
        assert shutil.which(program), f"{program} not found: `make test` installs the Debian package containerd"
    daemon = OwnContainerd()
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
    assert not processes_mentioning(str(daemon.folder))
    assert not mounts_under([daemon.folder]) and not daemon.folder.exists()


@pytest.fixture
def mirror():
    with FakeRegistry() as registry:
        registry.add_image("library/alpine", "3.19", build_image("alpine", layer_sizes=(2000, 30_000)))
        yield registry


def engine(containerd, mirror_url, *, timeout=20.0, credentials=None, mirror_only=False, proxy_url=None):
    return ContainerdEngine(address=containerd.address, mirror_url=mirror_url,
                            proxy_url=proxy_url or f"http://127.0.0.1:{closed_port()}", ca_file=None,
                            credentials=credentials, timeout=timeout, mirror_only=mirror_only)


@needs_containerd
def test_the_mirror_serves_and_every_pull_really_pulls(containerd, mirror):
    puller = engine(containerd, mirror.base_url)
    try:
        first, second = puller.pull(ALPINE), puller.pull(ALPINE)
    finally:
        puller.close()
    image = mirror.manifests[("library/alpine", "3.19")][0]
    for result in (first, second):
        assert result.ok and result.served_by == "mirror", result
        assert result.digest == "sha256:" + __import__("hashlib").sha256(image).hexdigest()
        assert result.bytes == sum(len(b) for b in mirror.blobs.values()) + len(image)
        assert [(a.endpoint, a.ok, a.status) for a in result.attempts] == [("mirror", True, 200)]
    # The image and its content were collected before the second pull: every blob came twice.
    assert len(mirror.requests_of("blob")) == 2 * len(mirror.blobs)


@needs_containerd
def test_a_mirror_404_falls_back_to_hub_and_the_first_real_error_is_reported(containerd, mirror):
    mirror.manifests.clear()
    puller = engine(containerd, mirror.base_url)
    try:
        result = puller.pull(ALPINE)
    finally:
        puller.close()
    assert not result.ok and result.error_code == "NETWORK", result
    first, second = result.attempts
    assert (first.endpoint, first.status, first.error_code) == ("mirror", 404, "MANIFEST_UNKNOWN")
    assert (second.endpoint, second.error_code) == ("hub", "NETWORK")
    assert "proxyconnect" in second.message or "connection refused" in second.message


@needs_containerd
def test_mirror_only_pulls_the_mirrors_own_name_and_never_asks_hub(containerd, mirror):
    with FakeRegistry() as proxy_stand_in:
        puller = engine(containerd, mirror.base_url, mirror_only=True, proxy_url=proxy_stand_in.base_url)
        try:
            served = puller.pull(ALPINE)
            mirror.manifests.clear()
            refused = puller.pull(ALPINE)
        finally:
            puller.close()
        assert proxy_stand_in.seen == []
    assert served.ok and served.served_by == "mirror"
    assert not refused.ok and refused.error_code == "MANIFEST_UNKNOWN"
    (only,) = refused.attempts
    assert (only.endpoint, only.status, only.error_code) == ("mirror", 404, "MANIFEST_UNKNOWN")


@needs_containerd
def test_the_password_is_typed_never_on_a_command_line_or_in_a_file(containerd, mirror, monkeypatch):
    secret = "s3cret-" + os.urandom(4).hex()
    seen_argv: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(argv, *args, **kwargs):
        seen_argv.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    mirror.manifests.clear()  # so ctr goes on to Hub, where it would use the login
    puller = engine(containerd, mirror.base_url, credentials=("alice", secret))
    workdir = puller.workdir
    try:
        result = puller.pull(ALPINE)
        files = [p.read_bytes() for p in workdir.rglob("*") if p.is_file()]
    finally:
        puller.close()
    assert not result.ok
    pulls = [argv for argv in seen_argv if "pull" in argv]
    assert pulls and all("--user" in argv and "alice" in argv for argv in pulls)
    assert not any(secret in arg for argv in seen_argv for arg in argv)
    assert not any(secret.encode() in data for data in files)
    assert not workdir.exists()


@needs_containerd
def test_a_hanging_mirror_is_bounded_by_the_budget_and_leaves_no_process(containerd):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted, stop = [], threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    puller = engine(containerd, url, timeout=2.0)
    try:
        started = time.monotonic()
        result = puller.pull(ALPINE)
        elapsed = time.monotonic() - started
    finally:
        puller.close()
        stop.set()
        thread.join(timeout=2)
        listener.close()
        for conn in accepted:
            conn.close()
    assert not result.ok and result.error_code == "TIMEOUT", result
    assert 1.5 <= elapsed < 6
    assert f'still waiting for an answer to HEAD "{url}/v2/library/alpine/manifests/3.19?ns=docker.io"' in result.message
    # The mirror held the pull to its end (ctr then tries Hub, already out of time).
    mirror_attempt = result.attempts[0]
    assert (mirror_attempt.endpoint, mirror_attempt.error_code) == ("mirror", "TIMEOUT")
    assert not processes_mentioning(str(puller.workdir))


@needs_containerd
def test_pulls_side_by_side_do_not_remove_each_others_images(containerd):
    with FakeRegistry() as mirror:
        names = [f"library/app{index}" for index in range(4)]
        for name in names:
            mirror.add_image(name, "1", build_image(name, layer_sizes=(2000, 200_000)))
        results = {}

        def pull(name):
            puller = engine(containerd, mirror.base_url)
            try:
                results[name] = puller.pull(parse_reference(f"{name}:1"))
            finally:
                puller.close()

        threads = [threading.Thread(target=pull, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert all(results[name].ok and results[name].served_by == "mirror" for name in names), results
