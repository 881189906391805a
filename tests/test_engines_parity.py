"""Parity: the same situations through one real lab with the three engines
(builtin emulation, a real dockerd, skopeo), side by side.

The lab and its private dockerd start once for the module. The table is
printed (run pytest with -s to see it) and every cell is asserted: where the
engines agree the expectation is shared; where a real client differs from
the emulation, the real client is right and docs/engines.md gives the
evidence.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.clients.engines import make_engine
from chaos.vocab.names import ENGINES
from chaos.clients.pusher import push
from chaos.lab.dockerd import mounts_under
from chaos.lab.lab import Lab
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference
from chaos.language.model import LabSpec, SeedImage, User
from tests.lab_helpers import listening, processes_mentioning

pytestmark = pytest.mark.lab

ALICE = ("alice", "wonderland")
PUBLIC = parse_reference("alpine:3.19")
MULTI_ARCH = parse_reference("postgres:16")
UNCACHED = parse_reference("nginx:1.25")
UNCACHED_RATE_LIMITED = parse_reference("redis:7")
UNCACHED_503 = parse_reference("httpd:2")
UNCACHED_CORRUPT = parse_reference("memcached:1")
PRIVATE = parse_reference("alice/private-app:1.0")
PUSH_SOURCE = parse_reference("busybox:1")
PUSHED = parse_reference("alice/build-cache:1")
TIMEOUT_S = 10.0
DOCKER_PUSH_DEADLINE_S = 120  # dockerd retries a refused upload 5 times, ~50 s in all

HUB_DOWN = {"name": "hub-down", "kind": "refuse", "match": {"roles": ["registry", "auth"]}}
RATE_LIMITED = {"name": "rate-limited", "kind": "rate-limit", "params": {"limit": 0}, "match": {"roles": ["registry"]}}
MANIFESTS_503 = {"name": "manifests-503", "kind": "http", "params": {"status": 503}, "match": {"endpoints": ["manifest"]}}
CDN_CORRUPT = {"name": "cdn-corrupt", "kind": "corrupt", "match": {"roles": ["cdn"]}}


@dataclass(frozen=True)
class Cell:
    ok: bool
    code: str | None
    served_by: str | None
    digest: str | None = None
    message: str | None = None
    seconds: float = 0.0
    last_attempt: object = None

    def __str__(self) -> str:
        outcome = f"ok {self.served_by}" if self.ok else f"FAIL {self.code}"
        return f"{outcome} {self.seconds:.1f}s"


@dataclass(frozen=True)
class Situation:
    name: str
    ok: bool
    codes: tuple[str, ...] = ()  # accepted error codes when not ok
    served_by: str | None = None
    # Where a real client differs from the rest: engine -> its code (see docs/engines.md).
    differs: tuple[tuple[str, str], ...] = ()

    def accepted(self, engine: str) -> tuple[str, ...]:
        return tuple(code for name, code in self.differs if name == engine) or self.codes


SITUATIONS = (
    Situation("public pull", True, served_by="mirror"),
    Situation("multi-arch pull", True, served_by="mirror"),
    Situation("private, logged in", True, served_by="hub"),
    # dockerd and skopeo put the bearer challenge's error="insufficient_scope"
    # (DENIED) before the body's UNAUTHORIZED; the builtin client now does too.
    Situation("private, logged out", False, ("DENIED",)),
    # skopeo first asks whether the blob is there (HEAD); the mirror, asking Hub
    # about a repository Hub denies, answers 500 and skopeo stops before uploading.
    Situation("push to the mirror", False, ("UNSUPPORTED",), differs=(("skopeo", "BAD_RESPONSE"),)),
    Situation("outage: cached pull", True, served_by="mirror"),
    Situation("outage: uncached pull", False, ("NETWORK",)),
    Situation("outage: private, logged in", False, ("NETWORK",)),
    Situation("rate limit: cached pull", True, served_by="mirror"),
    Situation("rate limit: uncached pull", False, ("TOOMANYREQUESTS",)),
    # Hub's 503 carries an UNAVAILABLE body, but clients read bodies of 4xx
    # only (distribution's HandleErrorResponse): "received unexpected HTTP status".
    Situation("hub 503 on manifests: uncached pull", False, ("BAD_RESPONSE",)),
    Situation("corrupt CDN: uncached pull", False, ("DIGEST_MISMATCH",)),
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity-lab")
    spec = LabSpec(
        users=(User(*ALICE),),
        images=(
            SeedImage(PUBLIC, 200_000),
            SeedImage(MULTI_ARCH, 200_000, platforms=("linux/amd64", "linux/arm64")),
            SeedImage(UNCACHED, 100_000),
            SeedImage(UNCACHED_RATE_LIMITED, 100_000),
            SeedImage(UNCACHED_503, 100_000),
            SeedImage(UNCACHED_CORRUPT, 100_000, layers=1),
            SeedImage(PRIVATE, 100_000, private=True),
            SeedImage(PUSH_SOURCE, 100_000, layers=1),
        ),
    )
    with Lab(spec, root, engines={"docker", "skopeo"}) as lab:
        ports = dict(lab.state.ports)
        exec_root = lab.state.docker_exec_root
        yield lab
    # Nothing left behind: no process, port, mount or socket.
    assert not processes_mentioning(str(root))
    assert not processes_mentioning(exec_root)
    assert not listening(ports.values())
    assert not mounts_under([lab.paths.dockerd_data_root])
    assert exec_root and not Path(exec_root).exists()


def pull(lab: Lab, engine_name: str, ref, credentials=None) -> Cell:
    engine = make_engine(engine_name, lab=lab.state, credentials=credentials, timeout=TIMEOUT_S)
    try:
        result = engine.pull(ref)
    finally:
        engine.close()
    return Cell(result.ok, result.error_code, result.served_by, result.digest, result.message, result.seconds,
                result.attempts[-1] if result.attempts else None)


def push_cell(result) -> Cell:
    return Cell(result.ok, result.error_code, None, result.digest, result.message, result.seconds)


@pytest.fixture(scope="module")
def table(lab):
    """{(engine, situation name): Cell}, all situations run in order."""
    cells: dict[tuple[str, str], Cell] = {}
    state = lab.state

    def each(situation: str, ref, credentials=None):
        for engine in ENGINES:
            cells[engine, situation] = pull(lab, engine, ref, credentials)

    each("public pull", PUBLIC)
    each("multi-arch pull", MULTI_ARCH)
    each("private, logged in", PRIVATE, ALICE)
    each("private, logged out", PRIVATE)

    # Pushes go straight to the mirror on loopback: faults on Hub do not touch
    # them. dockerd's takes ~50 s (it retries), so it runs beside the rest.
    cells["builtin", "push to the mirror"] = push_cell(
        push(PUSHED, target="mirror", url=state.mirror_url, size_bytes=100_000, timeout=TIMEOUT_S))
    skopeo = make_engine("skopeo", lab=state, credentials=None, timeout=TIMEOUT_S)
    try:
        cells["skopeo", "push to the mirror"] = push_cell(skopeo.push(PUSHED, state.mirror_url, source=PUSH_SOURCE))
    finally:
        skopeo.close()
    docker_push: dict = {}

    def push_with_docker():
        engine = make_engine("docker", lab=state, credentials=None, timeout=DOCKER_PUSH_DEADLINE_S - 10)
        try:
            docker_push["result"] = engine.push(PUSHED, state.mirror_url, source=PUSH_SOURCE)
        except BaseException as exc:  # reported by the test that reads it
            docker_push["error"] = exc
        finally:
            engine.close()

    pusher = threading.Thread(target=push_with_docker, daemon=True)
    pusher.start()

    with ControlClient(state.control_url, timeout=5.0) as control:
        control.add(HUB_DOWN)
        try:
            each("outage: cached pull", PUBLIC)
            each("outage: uncached pull", UNCACHED)
            each("outage: private, logged in", PRIVATE, ALICE)
        finally:
            control.remove("hub-down")
        control.add(RATE_LIMITED)
        try:
            each("rate limit: cached pull", PUBLIC)
            each("rate limit: uncached pull", UNCACHED_RATE_LIMITED)
        finally:
            control.remove("rate-limited")
        for fault, situation, ref in ((MANIFESTS_503, "hub 503 on manifests: uncached pull", UNCACHED_503),
                                      (CDN_CORRUPT, "corrupt CDN: uncached pull", UNCACHED_CORRUPT)):
            control.add(fault)
            try:
                each(situation, ref)
            finally:
                control.remove(fault["name"])

    pusher.join(timeout=DOCKER_PUSH_DEADLINE_S)
    assert not pusher.is_alive(), "docker push to the mirror did not finish"
    if "error" in docker_push:
        raise docker_push["error"]
    cells["docker", "push to the mirror"] = push_cell(docker_push["result"])
    print_table(cells)
    return cells


def print_table(cells) -> None:
    width = max(len(s.name) for s in SITUATIONS)
    lines = [f"{'situation':<{width}}  " + "  ".join(f"{e:<26}" for e in ENGINES)]
    for situation in SITUATIONS:
        lines.append(f"{situation.name:<{width}}  " + "  ".join(f"{str(cells[e, situation.name]):<26}" for e in ENGINES))
    print("\n" + "\n".join(lines))


@pytest.mark.parametrize("situation", SITUATIONS, ids=[s.name for s in SITUATIONS])
@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_meets_the_situation_the_same_way(table, engine, situation):
    cell = table[engine, situation.name]
    assert cell.ok == situation.ok, cell.message
    if situation.ok:
        assert cell.served_by == situation.served_by
    else:
        assert cell.code in situation.accepted(engine), cell.message


FAILED_PULLS = [s.name for s in SITUATIONS if not s.ok and not s.name.startswith("push")]


@pytest.mark.parametrize("situation", FAILED_PULLS)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_pull_says_why_on_its_last_attempt(table, engine, situation):
    cell = table[engine, situation]
    assert cell.last_attempt is not None and not cell.last_attempt.ok
    assert cell.last_attempt.error_code == cell.code, cell.last_attempt


@pytest.mark.parametrize("situation", ["public pull", "multi-arch pull", "private, logged in", "outage: cached pull"])
def test_every_engine_reports_the_same_platform_manifest_digest(table, situation):
    digests = {engine: table[engine, situation].digest for engine in ENGINES}
    assert len(set(digests.values())) == 1 and None not in digests.values(), digests


def test_the_cached_image_during_the_outage_is_the_one_pulled_before(table):
    for engine in ENGINES:
        assert table[engine, "outage: cached pull"].digest == table[engine, "public pull"].digest


@pytest.mark.parametrize("engine", ENGINES)
def test_a_private_pull_logged_out_reads_like_docker_pull(table, engine):
    message = table[engine, "private, logged out"].message
    assert message.startswith("pull access denied for alice/private-app") and "may require 'docker login'" in message


@pytest.mark.parametrize("engine", ENGINES)
def test_an_uncached_pull_during_the_outage_names_hub(table, engine):
    assert "registry-1.docker.io" in table[engine, "outage: uncached pull"].message
