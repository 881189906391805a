"""Push a synthetic image the way `docker push` would, and report a PushResult.

Targets: the mirror (a pull-through cache refuses pushes: 405 UNSUPPORTED),
the push registry that shares the mirror's storage (the blog post's fix), or
the lab hub as a logged-in user (with a token from the lab's auth service, as
`docker push` gets one from auth.docker.io).
"""

from __future__ import annotations

import time

import requests

from chaos.errors import ChaosError, UsageError
from chaos.images.push import PushError, push_image
from chaos.images.synth import build_image
from chaos.lab.layout import LabState
from chaos.vocab.hub import TOKEN_SERVICE
from chaos.vocab.reference import ImageReference
from chaos.vocab.results import PushResult

PUSH_TIMEOUT_S = 20.0


def push_to(
    lab: LabState,
    ref: ImageReference,
    *,
    to: str,
    size_bytes: int,
    credentials: tuple[str, str] | None = None,
    timeout: float = PUSH_TIMEOUT_S,
) -> PushResult:
    """Push to the lab's mirror, push registry or hub (`to`)."""
    headers = None
    if to == "mirror":
        url = lab.mirror_url
    elif to == "push-registry":
        if not lab.push_registry_url:
            raise UsageError("push to push-registry: the lab has no push registry (set lab.push_registry: true)")
        url = lab.push_registry_url
    elif to == "hub":
        if credentials is None:
            raise UsageError("push to hub needs a login (Hub never takes anonymous pushes)")
        url = lab.hub_url
        headers = {"Authorization": f"Bearer {_hub_push_token(lab, ref, credentials, timeout)}"}
    else:
        raise UsageError(f"push: unknown target {to!r} (expected mirror, push-registry or hub)")
    return push(ref, target=to, url=url, size_bytes=size_bytes, headers=headers, timeout=timeout)


def _hub_push_token(lab: LabState, ref: ImageReference, credentials: tuple[str, str], timeout: float) -> str:
    # `docker push` to Hub: a token from auth.docker.io with the user's password.
    session = requests.Session()
    session.trust_env = False
    try:
        response = session.get(
            f"{lab.auth_url}/token",
            params={"service": TOKEN_SERVICE, "scope": f"repository:{ref.repository}:pull,push"},
            auth=credentials,
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise ChaosError(f"push to hub: the token service did not answer: {exc}") from None
    finally:
        session.close()
    if not response.ok:
        raise ChaosError(f"push to hub: the token service answered {response.status_code}: {response.text[:200]}")
    return response.json()["token"]


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
