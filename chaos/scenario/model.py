"""Scenario files, parsed: frozen dataclasses the runner consumes.

The runner never sees YAML; everything here is validated and typed, and every
element keeps `loc` ("file:line") so runtime verdicts can point back at the file.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any

from chaos.vocab.reference import ImageReference

_OPERATORS = {
    "==": operator.eq, ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "!=": operator.ne,
}


@dataclass(frozen=True)
class Comparison:
    """`3`, `">= 0.95"`, `"< 10"`: a number and how an actual value must relate to it."""

    op: str
    value: float

    def holds(self, actual: float | None) -> bool:
        return actual is not None and _OPERATORS[self.op](actual, self.value)

    def __str__(self) -> str:
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{self.op} {value}"


@dataclass(frozen=True)
class User:
    name: str
    password: str


@dataclass(frozen=True)
class SeedImage:
    """An image the lab hub holds (before the run, or published during it)."""

    ref: ImageReference
    size_bytes: int
    private: bool = False
    readers: tuple[str, ...] = ()
    layers: int = 2
    platforms: tuple[str, ...] = ("linux/amd64",)
    loc: str = ""


@dataclass(frozen=True)
class LabSpec:
    users: tuple[User, ...] = ()
    images: tuple[SeedImage, ...] = ()
    # The blog post's fix for pushing: a plain registry sharing the mirror's storage.
    push_registry: bool = False
    seed: str = "hub-chaos"


@dataclass(frozen=True)
class Target:
    """An existing set-up to test instead of the embedded lab."""

    mirror_url: str
    control_url: str
    proxy_url: str | None = None  # the fault proxy, for the client's own fallback to Hub
    ca_file: str | None = None  # trust for TLS through that proxy
    storage: str | None = None  # the mirror's storage folder, when readable from here
    users: tuple[User, ...] = ()


@dataclass(frozen=True)
class Repeat:
    times: int | None = None
    duration_s: float | None = None
    interval_s: float = 0.0


@dataclass(frozen=True)
class Expectation:
    """What must hold after a step; None or empty means "not asked"."""

    ok: bool | None = None
    error: tuple[str, ...] = ()
    message: re.Pattern | None = None
    served_by: str | None = None
    from_cache: bool | None = None
    same_digest_as: str | None = None
    upstream: tuple[tuple[str, Comparison], ...] = ()  # (endpoint kind or "blob_bytes", comparison)
    within_s: float | None = None  # time budget for the step (each attempt, when repeated)
    success_rate: Comparison | None = None  # over repeats and images
    loc: str = ""

    @property
    def empty(self) -> bool:
        return self == Expectation(loc=self.loc)


@dataclass(frozen=True)
class PullAction:
    images: tuple[ImageReference, ...]
    login: str | None = None
    concurrency: int = 1
    engine: str | None = None  # None: the run's engine


@dataclass(frozen=True)
class PushAction:
    image: ImageReference
    to: str  # "mirror", "hub" or "push-registry"
    size_bytes: int
    login: str | None = None


@dataclass(frozen=True)
class CheckAction:
    cached: tuple[str, ...] = ()
    not_cached: tuple[str, ...] = ()
    storage_unchanged_since: str | None = None
    catalog_unchanged_since: str | None = None
    storage_grew_since: str | None = None
    tap_since: str | None = None  # a step name, or "start"
    tap_counts: tuple[tuple[str, Comparison], ...] = ()


@dataclass(frozen=True)
class FaultAction:
    spec: dict[str, Any]  # validated by chaos.faults; sent as-is to the control API

    @property
    def name(self) -> str:
        return self.spec["name"]


@dataclass(frozen=True)
class ClearAction:
    names: tuple[str, ...] = ()  # empty: every fault


@dataclass(frozen=True)
class WaitAction:
    seconds: float | None = None  # a plain pause
    until: CheckAction | None = None  # or: poll this check until it holds
    interval_s: float = 0.5


@dataclass(frozen=True)
class RestartAction:
    component: str  # "mirror", "hub", "proxy", "auth", "cdn", "push-registry"


@dataclass(frozen=True)
class PublishAction:
    image: SeedImage
    content_seed: str  # a new seed moves the tag to new content


Action = PullAction | PushAction | CheckAction | FaultAction | ClearAction | WaitAction | RestartAction | PublishAction


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    action: Action
    expect: Expectation
    timeout_s: float
    loc: str
    description: str = ""
    repeat: Repeat | None = None

    @property
    def line(self) -> int:
        return int(self.loc.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    lab: LabSpec
    steps: tuple[Step, ...] = field(default_factory=tuple)
    tags: tuple[str, ...] = ()
    target: Target | None = None
    steady_state: tuple[Step, ...] = ()
    rollback: tuple[Step, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)  # the values used, for the journal

    def all_steps(self) -> tuple[Step, ...]:
        return self.steady_state + self.steps + self.rollback

    @property
    def users(self) -> tuple[User, ...]:
        return self.target.users if self.target else self.lab.users
