"""The structured outcome every engine returns, so expectations never care which
engine ran."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Attempt:
    """One endpoint tried during a pull (mirror first, then hub)."""

    endpoint: str  # "mirror" or "hub"
    url: str
    ok: bool
    status: int | None = None
    error_code: str | None = None
    message: str | None = None


def with_final_error(attempts: tuple[Attempt, ...], code: str | None, message: str | None) -> tuple[Attempt, ...]:
    """A failed pull failed because its last attempt did: give that attempt the
    pull's error code, as the builtin client records it. The real engines'
    logs name its endpoint but seldom why it failed (the message is kept when
    they do)."""
    if not attempts or attempts[-1].ok:
        return attempts
    last = attempts[-1]
    return (*attempts[:-1], replace(last, error_code=code, message=last.message or message))


@dataclass(frozen=True)
class PullResult:
    image: str  # the reference as given, normalised (docker.io/library/alpine:3.19)
    ok: bool
    error_code: str | None = None
    message: str | None = None
    served_by: str | None = None  # "mirror" or "hub": whoever answered the manifest
    digest: str | None = None  # manifest digest of the (platform) image pulled
    bytes: int = 0  # bytes downloaded (manifests + config + layers)
    seconds: float = 0.0
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    raw: str | None = None  # the engine's own error text, verbatim

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PushResult:
    image: str
    target: str  # "mirror", "hub" or a URL
    ok: bool
    error_code: str | None = None
    message: str | None = None
    status: int | None = None
    digest: str | None = None
    bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)
