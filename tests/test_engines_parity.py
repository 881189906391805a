"""Parity: the same situations through one real lab with the four engines
(builtin emulation, a real dockerd, skopeo, containerd's ctr), side by side.

The lab, its private dockerd and its containerd start once for the module.
The table is printed (run pytest with -s to see it) and every cell is
asserted: where the engines agree the expectation is shared; where a real
client differs from the emulation, the real client is right and
docs/engines.md gives the evidence. Beside each pull's result, what the
mirror itself answered (the pull's mirror attempt) is asserted too, and a
row pulls from the mirror alone.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.clients.engines import make_engine
from chaos.clients.pushing import push_with
from chaos.errors import UsageError
from chaos.lab.dockerd import mounts_under
from chaos.lab.lab import Lab
from chaos.language.model import LabSpec, SeedImage, User
from chaos.proxy.control_client import ControlClient
from chaos.vocab.names import ENGINES
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import listening, processes_mentioning

pytestmark = pytest.mark.lab

ALICE = ("alice", "wonderland")
PUBLIC = parse_reference("alpine:3.19")
MULTI_ARCH = parse_reference("postgres:16")
UNCACHED = parse_reference("nginx:1.25")
UNCACHED_RATE_LIMITED = parse_reference("redis:7")
UNCACHED_503 = parse_reference("httpd:2")
UNCACHED_CORRUPT = parse_reference("memcached:1")
NEVER_CACHED = parse_reference("traefik:3")
PRIVATE = parse_reference("alice/private-app:1.0")
PUSHED = parse_reference("alice/build-cache:1")
PUSHED_SHORT = parse_reference("alice/build-cache:2")
TIMEOUT_S = 10.0
DOCKER_PUSH_BUDGET_S = 90  # dockerd retries a refused upload: 5 attempts, 5+10+15+20 s apart
SHORT_PUSH_BUDGET_S = 12  # ends the push during the daemon's retries

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
    attempts: tuple = ()

    @property
    def mirror(self):
        """What the mirror itself answered: the pull's first mirror attempt."""
        return next((a for a in self.attempts if a.endpoint == "mirror"), None)

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
    # What the mirror itself answered, the same for every engine: (status, error code).
    mirror: tuple[int, str | None] | None = None

    def accepted(self, engine: str) -> tuple[str, ...]:
        return tuple(code for name, code in self.differs if name == engine) or self.codes


SITUATIONS = (
    Situation("public pull", True, served_by="mirror", mirror=(200, None)),
    Situation("multi-arch pull", True, served_by="mirror", mirror=(200, None)),
    Situation("private, logged in", True, served_by="hub", mirror=(404, "MANIFEST_UNKNOWN")),
    # dockerd and skopeo put the bearer challenge's error="insufficient_scope"
    # (DENIED) before the body's UNAUTHORIZED; the builtin client now does too.
    Situation("private, logged out", False, ("DENIED",), mirror=(404, "MANIFEST_UNKNOWN")),
    # skopeo and ctr first ask whether each blob is there (HEAD); the mirror, asking
    # Hub about a repository Hub denies, answers 500 and they stop before uploading.
    Situation("push to the mirror", False, ("UNSUPPORTED",),
              differs=(("skopeo", "BAD_RESPONSE"), ("containerd", "BAD_RESPONSE"))),
    Situation("mirror only: cached", True, served_by="mirror", mirror=(200, None)),
    Situation("outage: cached pull", True, served_by="mirror", mirror=(200, None)),
    # distribution 2.8 answers an uncached tag with 404 when its upstream is unreachable.
    Situation("outage: uncached pull", False, ("NETWORK",), mirror=(404, "MANIFEST_UNKNOWN")),
    Situation("outage: mirror only, uncached", False, ("MANIFEST_UNKNOWN",), mirror=(404, "MANIFEST_UNKNOWN")),
    Situation("outage: private, logged in", False, ("NETWORK",), mirror=(404, "MANIFEST_UNKNOWN")),
    Situation("rate limit: cached pull", True, served_by="mirror", mirror=(200, None)),
    # The mirror turns Hub's 429 into 500; containerd reports the first host's
    # error that is not a 404 (the mirror's), where the others report Hub's.
    Situation("rate limit: uncached pull", False, ("TOOMANYREQUESTS",), differs=(("containerd", "BAD_RESPONSE"),),
              mirror=(500, "BAD_RESPONSE")),
    # Hub's 503 carries an UNAVAILABLE body, but clients read bodies of 4xx
    # only (distribution's HandleErrorResponse): "received unexpected HTTP status".
    Situation("hub 503 on manifests: uncached pull", False, ("BAD_RESPONSE",), mirror=(404, "MANIFEST_UNKNOWN")),
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
            SeedImage(NEVER_CACHED, 100_000),
            SeedImage(PRIVATE, 100_000, private=True),
        ),
    )
    own_containerd = None
    try:
        lab = Lab(spec, root, engines={"docker", "skopeo", "containerd"})
    except UsageError:
        # A lab that cannot run containerd yet: the engine then uses one of this module's.
        from tests.test_clients_containerd_engine import OwnContainerd

        own_containerd = OwnContainerd()
        own_containerd.start()
        os.environ["CONTAINERD_ADDRESS"] = own_containerd.address
        lab = Lab(spec, root, engines={"docker", "skopeo"})
    try:
        with lab:
            ports = dict(lab.state.ports)
            folders = [str(root)] + [folder for folder in (lab.state.docker_exec_root, getattr(lab.state, "scratch", ""))
                                     if folder]
            yield lab
    finally:
        if own_containerd is not None:
            os.environ.pop("CONTAINERD_ADDRESS", None)
            own_containerd.stop()
    # Nothing left behind: no process, port, mount or socket.
    for folder in folders:
        assert not processes_mentioning(folder)
        assert not mounts_under([Path(folder)])
    assert not listening(ports.values())
    assert lab.state.docker_exec_root and not Path(lab.state.docker_exec_root).exists()


def pull(lab: Lab, engine_name: str, ref, credentials=None, *, mirror_only: bool = False) -> Cell:
    engine = make_engine(engine_name, lab=lab.state, credentials=credentials, timeout=TIMEOUT_S, mirror_only=mirror_only)
    try:
        result = engine.pull(ref)
    finally:
        engine.close()
    return Cell(result.ok, result.error_code, result.served_by, result.digest, result.message, result.seconds,
                result.attempts)


def push_cell(result) -> Cell:
    return Cell(result.ok, result.error_code, None, result.digest, result.message, result.seconds)


@pytest.fixture(scope="module")
def table(lab):
    """{(engine, situation name): Cell}, all situations run in order."""
    cells: dict[tuple[str, str], Cell] = {}
    state = lab.state

    def each(situation: str, ref, credentials=None, *, mirror_only: bool = False):
        for engine in ENGINES:
            cells[engine, situation] = pull(lab, engine, ref, credentials, mirror_only=mirror_only)

    each("public pull", PUBLIC)
    each("multi-arch pull", MULTI_ARCH)
    each("private, logged in", PRIVATE, ALICE)
    each("private, logged out", PRIVATE)
    each("mirror only: cached", PUBLIC, mirror_only=True)

    # Pushes go straight to the mirror on loopback: faults on Hub do not touch
    # them. dockerd's takes ~50 s (it retries), so it runs beside the rest.
    for engine in ("builtin", "skopeo", "containerd"):
        cells[engine, "push to the mirror"] = push_cell(
            push_with(engine, state, PUSHED, to="mirror", size_bytes=100_000, timeout=TIMEOUT_S))
    docker_push: dict = {}

    def push_with_docker(key: str, image, budget: float):
        try:
            docker_push[key] = push_with("docker", state, image, to="mirror", size_bytes=100_000, timeout=budget)
        except BaseException as exc:  # reported by the test that reads it
            docker_push["error"] = exc

    pushers = [threading.Thread(target=push_with_docker, args=args, daemon=True)
               for args in (("full", PUSHED, DOCKER_PUSH_BUDGET_S), ("cut short", PUSHED_SHORT, SHORT_PUSH_BUDGET_S))]
    for pusher in pushers:
        pusher.start()

    with ControlClient(state.control_url, timeout=5.0) as control:
        control.add(HUB_DOWN)
        try:
            each("outage: cached pull", PUBLIC)
            each("outage: uncached pull", UNCACHED)
            each("outage: mirror only, uncached", NEVER_CACHED, mirror_only=True)
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

    for pusher in pushers:
        pusher.join(timeout=DOCKER_PUSH_BUDGET_S + 30)
        assert not pusher.is_alive(), "docker push to the mirror did not finish"
    if "error" in docker_push:
        raise docker_push["error"]
    cells["docker", "push to the mirror"] = push_cell(docker_push["full"])
    cells["docker", "push to the mirror, cut short"] = push_cell(docker_push["cut short"])
    print_table(cells)
    return cells


def print_table(cells) -> None:
    width = max(len(s.name) for s in SITUATIONS)
    lines = [f"{'situation':<{width}}  " + "  ".join(f"{e:<22}" for e in ENGINES)]
    for situation in SITUATIONS:
        lines.append(f"{situation.name:<{width}}  " + "  ".join(f"{str(cells[e, situation.name]):<22}" for e in ENGINES))
    lines.append("")
    lines.append("what the mirror answered (status error), per engine:")
    for situation in SITUATIONS:
        if situation.mirror is not None:
            answers = []
            for engine in ENGINES:
                mirror = cells[engine, situation.name].mirror
                answers.append(f"{mirror.status} {mirror.error_code or ''}".strip() if mirror else "-")
            lines.append(f"{situation.name:<{width}}  " + "  ".join(f"{a:<22}" for a in answers))
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


MIRROR_ANSWERS = [s for s in SITUATIONS if s.mirror is not None]


@pytest.mark.parametrize("situation", MIRROR_ANSWERS, ids=[s.name for s in MIRROR_ANSWERS])
@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_reports_what_the_mirror_itself_answered(table, engine, situation):
    mirror = table[engine, situation.name].mirror
    assert mirror is not None, table[engine, situation.name]
    status, code = situation.mirror
    assert (mirror.status, mirror.error_code) == (status, code), mirror
    assert mirror.ok == (status == 200)
    if not mirror.ok:
        assert mirror.message


@pytest.mark.parametrize("situation", ["mirror only: cached", "outage: mirror only, uncached"])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_pull_from_the_mirror_alone_never_reaches_hub(table, engine, situation):
    assert [a.endpoint for a in table[engine, situation].attempts] == ["mirror"]


FAILED_PULLS = [s.name for s in SITUATIONS if not s.ok and not s.name.startswith("push")]


@pytest.mark.parametrize("situation", FAILED_PULLS)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_failed_pull_says_why_on_the_attempt_that_failed_it(table, engine, situation):
    cell = table[engine, situation]
    assert cell.attempts and not cell.attempts[-1].ok
    if engine == "containerd":
        # containerd reports the first failing host's error, not the last's.
        assert cell.code in [a.error_code for a in cell.attempts], cell.attempts
    else:
        assert cell.attempts[-1].error_code == cell.code, cell.attempts[-1]


@pytest.mark.parametrize("situation", ["public pull", "multi-arch pull", "private, logged in", "outage: cached pull",
                                       "mirror only: cached"])
def test_every_engine_reports_the_same_platform_manifest_digest(table, situation):
    digests = {engine: table[engine, situation].digest for engine in ENGINES}
    assert len(set(digests.values())) == 1 and None not in digests.values(), digests


def test_a_docker_push_the_budget_cuts_short_reports_the_error_the_daemon_kept_retrying(table):
    full, cut = table["docker", "push to the mirror"], table["docker", "push to the mirror, cut short"]
    assert full.seconds >= 45  # 5 attempts, 5 + 10 + 15 + 20 s apart
    assert (cut.ok, cut.code) == (False, "UNSUPPORTED"), cut.message
    assert "still retrying" in cut.message and SHORT_PUSH_BUDGET_S - 1 <= cut.seconds < SHORT_PUSH_BUDGET_S + 5


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
