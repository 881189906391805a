"""The engine interface: whatever pulls an image (the builtin emulation, a real
Docker daemon, skopeo) answers `pull(ref) -> PullResult` with the same meaning
of every field, so a scenario's expectations never care which engine ran.

    engine = make_engine("docker", lab=state, credentials=None, timeout=20.0)
    try:
        result = engine.pull(parse_reference("alpine:3.19"))
    finally:
        engine.close()

make_engine raises UsageError (exit 2) for a name it does not know and
EnvironmentProblem (exit 3), one line naming the engine and why, when the
engine cannot run on this machine; `builtin` always can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from chaos.clients.builtin import BuiltinClient
from chaos.vocab.results import PullResult, PushResult
from chaos.errors import UsageError
from chaos.lab.layout import LabPaths, LabState
from chaos.vocab.names import ENGINES
from chaos.vocab.reference import ImageReference



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
    """An optional ability: push `source` (pulled first where needed) as `image`
    to the registry at `registry_url` (a loopback http URL)."""

    def push(self, image: ImageReference, registry_url: str, *, source: ImageReference) -> PushResult: ...


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
) -> Engine:
    """An engine configured for `lab` (its mirror, fault proxy and CA; for docker
    its private dockerd when the lab started one, else DOCKER_HOST or the
    default socket). credentials are the user's `docker login`; timeout bounds
    a whole pull for the real engines and each connect/read for builtin."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r} (expected one of: {', '.join(ENGINES)})")
    if timeout <= 0:
        raise UsageError(f"timeout must be positive, got {timeout!r}")
    common = {"mirror_url": lab.mirror_url or None, "credentials": credentials, "timeout": timeout}
    # builtin and skopeo reach Hub through the fault proxy themselves; dockerd was started with it.
    via_proxy = {"proxy_url": lab.proxy_url or None, "ca_file": lab.ca_file or None}
    if name == "builtin":
        return BuiltinEngine(BuiltinClient(**common, **via_proxy))
    if name == "docker":
        # Imported here: the docker SDK is only needed by those who ask for it.
        from chaos.clients.docker_engine import DockerEngine, default_docker_host

        return DockerEngine(
            docker_host=lab.docker_host or default_docker_host(),
            daemon_log=LabPaths(Path(lab.root)).log("dockerd") if lab.docker_host else None,
            **common,
        )
    from chaos.clients.skopeo_engine import SkopeoEngine

    return SkopeoEngine(**common, **via_proxy)
