"""Pushes with the run's engine: `push_with("docker", lab, image, to="mirror")`
pushes a synthetic image the way that engine's users push (docker push,
skopeo copy, ctr images push; builtin: chaos.clients.pusher).

The real engines push a local image, so the synthetic image is first handed
to them as a docker-archive tarball (the content the builtin pusher would
push, tagged for the target): nothing is pushed anywhere else first, and the
lab's registries see only the push itself. The PushResult has the meaning
of the builtin pusher's: the registry's error code (UNSUPPORTED from a
pull-through cache, UNAUTHORIZED...), NETWORK or TIMEOUT; status when the
engine's text shows (or its code implies) one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from chaos.clients.engines import make_engine
from chaos.clients.image_archive import write_docker_archive
from chaos.clients.pusher import PUSH_TIMEOUT_S, push_to
from chaos.errors import UsageError
from chaos.images.synth import build_image
from chaos.lab.layout import LabState
from chaos.vocab.hub import DOCKER_IO
from chaos.vocab.names import ENGINES
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import PushResult

TARGETS = ("mirror", "push-registry", "hub")
PUSH_SEED = "hub-chaos:push"  # the builtin pusher's: every engine pushes the same content


def push_with(
    engine_name: str,
    lab: LabState,
    image: ImageReference,
    *,
    to: str,
    size_bytes: int,
    credentials: tuple[str, str] | None = None,
    timeout: float = PUSH_TIMEOUT_S,
) -> PushResult:
    """Push a synthetic `image` of about `size_bytes` to the lab's mirror, push
    registry or hub (`to`) as engine `engine_name` would; timeout is the whole
    push's budget. UsageError for an unknown engine or target, or a push to
    hub without a login."""
    if engine_name not in ENGINES:
        raise UsageError(f"unknown engine {engine_name!r} (expected one of: {', '.join(ENGINES)})")
    if to not in TARGETS:
        raise UsageError(f"push: unknown target {to!r} (expected one of: {', '.join(TARGETS)})")
    if engine_name == "builtin":
        return push_to(lab, image, to=to, size_bytes=size_bytes, credentials=credentials, timeout=timeout)
    registry, plain_http = _registry(lab, to, credentials)
    tag = image.tag or "latest"
    synthetic = build_image(image.repository, tag, size_bytes, seed=PUSH_SEED)
    name = f"{registry}/{image.repository}:{tag}"
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hc-push-"))
    try:
        archive = workdir / "image.tar"
        write_docker_archive(synthetic, name, archive)
        engine = make_engine(engine_name, lab=lab, credentials=credentials, timeout=timeout)
        try:
            result = engine.push_archive(archive, name, plain_http=plain_http)
        finally:
            engine.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    pushed = synthetic.manifest.size + synthetic.config.size + sum(layer.size for layer in synthetic.layers)
    return replace(result, image=str(image), target=to, bytes=pushed if result.ok else 0,
                   seconds=time.monotonic() - started)


def _registry(lab: LabState, to: str, credentials) -> tuple[str, bool]:
    """(registry host as an image name starts, plain http?)."""
    if to == "hub":
        if credentials is None:
            raise UsageError("push to hub needs a login (Hub never takes anonymous pushes)")
        return DOCKER_IO, False
    url = lab.mirror_url if to == "mirror" else lab.push_registry_url
    if not url:
        what = "mirror" if to == "mirror" else "push registry (set lab.push_registry: true)"
        raise UsageError(f"push to {to}: the lab has no {what}")
    parts = urlsplit(url)
    return parts.netloc, parts.scheme == "http"
