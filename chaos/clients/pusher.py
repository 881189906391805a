"""Push a synthetic image the way `docker push` would, and report a PushResult.

Targets: the mirror (a pull-through cache refuses pushes: 405 UNSUPPORTED),
the push registry that shares the mirror's storage (the blog post's fix), or
the lab hub as a logged-in user.
"""

from __future__ import annotations

import time

import requests

from chaos.vocab.results import PushResult
from chaos.images.push import PushError, push_image
from chaos.images.synth import build_image
from chaos.vocab.reference import ImageReference


def push(
    ref: ImageReference,
    *,
    target: str,
    url: str,
    size_bytes: int,
    seed: str = "hub-chaos",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> PushResult:
    started = time.monotonic()
    image = build_image(ref.repository, ref.tag or "latest", size_bytes, seed=f"{seed}:push")
    session = requests.Session()
    session.trust_env = False  # the caller's proxy settings must not redirect a loopback push
    try:
        # One attempt: a push a scenario expects to fail must fail on its first answer.
        digest = push_image(url, ref.repository, ref.tag or "latest", image, session=session, headers=headers, timeout=timeout, attempts=1)
    except PushError as exc:
        # RegistryHTTPError (the registry's own code, e.g. UNSUPPORTED), RegistryUnreachable
        # (NETWORK or TIMEOUT) and a digest the registry got wrong (DIGEST_MISMATCH).
        return PushResult(
            image=str(ref), target=target, ok=False, error_code=exc.code or f"HTTP_{getattr(exc, 'status', '?')}",
            message=exc.message, status=getattr(exc, "status", None), seconds=time.monotonic() - started,
        )
    finally:
        session.close()
    pushed = image.manifest.size + image.config.size + sum(layer.size for layer in image.layers)
    return PushResult(image=str(ref), target=target, ok=True, digest=digest, bytes=pushed, seconds=time.monotonic() - started)
