"""The engine interface: whatever pulls an image (the builtin emulation, a real
Docker daemon, skopeo, containerd's ctr) answers `pull(ref) -> PullResult`
with the same meaning of every field, so a scenario's expectations never care
which engine ran.

    engine = make_engine("docker", lab=state, credentials=None, timeout=20.0)
    try:
        result = engine.pull(parse_reference("alpine:3.19"))
    finally:
        engine.close()

`timeout` is the whole pull's budget, for every engine: the caller passes
what is left of its own deadline. Inside it each engine keeps its real
client's own limits (dockerd's 15 s ping, its blob retries 5 to 25 s apart,
skopeo's and ctr's none), so a result never depends on the budget except
when the budget ends the pull (TIMEOUT). `mirror_only` pulls from the mirror
as from any registry (`127.0.0.1:5000/library/alpine:3.19`), with no
fallback to Hub: the result is the mirror's own answer.

make_engine raises UsageError (exit 2) for a name it does not know and
EnvironmentProblem (exit 3), one line naming the engine and why, when the
engine cannot run on this machine; `builtin` always can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from chaos.clients.builtin import BuiltinClient
from chaos.errors import UsageError
from chaos.lab.layout import LabPaths, LabState
from chaos.vocab.names import ENGINES
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import PullResult, PushResult


@runtime_checkable
class Engine(Protocol):
    name: str

    def pull(self, ref: ImageReference) -> PullResult:
        """Pull `ref` as this engine would; failures come back as ok=False, never raised
        (only an engine that stops working altogether raises EnvironmentProblem)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Pusher(Protocol):
    """An optional ability of the real engines: push the image in `archive` (a
    docker-archive tarball tagged `image`, "127.0.0.1:5000/alice/app:1" or
    "docker.io/alice/app:1") to the registry its name starts with; plain_http
    for a registry on plain http. chaos.clients.pushing.push_with builds the
    archive and calls this; use that."""

    def push_archive(self, archive: Path, image: str, *, plain_http: bool) -> PushResult: ...


class BuiltinEngine:
    """The builtin client (an emulation of the Docker 20.10 daemon's mirror
    fallback) behind the engine interface."""

    name = "builtin"

    def __init__(self, client: BuiltinClient):
        self.client = client

    def pull(self, ref: ImageReference) -> PullResult:
        return self.client.pull(ref)

    def close(self) -> None:
        pass  # every pull opens and closes its own session


def make_engine(
    name: str,
    *,
    lab: LabState,
    credentials: tuple[str, str] | None,
    timeout: float,
    mirror_only: bool = False,
) -> Engine:
    """An engine configured for `lab` (its mirror, fault proxy and CA; for docker
    its private dockerd when the lab started one, else DOCKER_HOST or the
    default socket; for containerd the lab's containerd, else
    CONTAINERD_ADDRESS or the default socket). credentials are the user's
    login. timeout: the whole pull's budget, in seconds. mirror_only: pull
    from the mirror alone (no fallback to Hub)."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r} (expected one of: {', '.join(ENGINES)})")
    if timeout <= 0:
        raise UsageError(f"timeout must be positive, got {timeout!r}")
    if mirror_only and not lab.mirror_url:
        raise UsageError("a pull from the mirror only needs a mirror, and this lab or target has none")
    common = {"mirror_url": lab.mirror_url or None, "credentials": credentials, "timeout": timeout}
    # builtin, skopeo and ctr reach Hub through the fault proxy themselves; dockerd was started with it.
    via_proxy = {"proxy_url": lab.proxy_url or None, "ca_file": lab.ca_file or None}
    if name == "builtin":
        return BuiltinEngine(BuiltinClient(**common, **via_proxy, mirror_only=mirror_only))
    if name == "docker":
        # Imported here: the docker SDK is only needed by those who ask for it.
        from chaos.clients.docker_engine import DockerEngine, default_docker_host

        return DockerEngine(
            docker_host=lab.docker_host or default_docker_host(),
            daemon_log=LabPaths(Path(lab.root)).log("dockerd") if lab.docker_host else None,
            mirror_only=mirror_only,
            **common,
        )
    if name == "containerd":
        from chaos.clients.containerd_engine import ContainerdEngine, default_address

        address = getattr(lab, "containerd_address", "") or default_address()
        return ContainerdEngine(address=address, mirror_only=mirror_only, **common, **via_proxy)
    from chaos.clients.skopeo_engine import SkopeoEngine

    return SkopeoEngine(**common, **via_proxy, mirror_only=mirror_only)
