"""Scenario files, parsed: frozen dataclasses the runner consumes.

The runner never sees YAML; everything here is validated and typed, and every
element keeps `loc` ("file:line") so runtime verdicts can point back at the file.
Each step's action is its kind's own dataclass (chaos.steps.kinds).
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
class MirrorSettings:
    """`lab.mirror`: how the mirror under test is configured, beyond the lab's needs."""

    upstream_login: str | None = None  # a lab user: the mirror's proxy.username/password on Hub
    ttl_s: float | None = None  # proxy.ttl: how long cached content is kept (distribution's default: 7 days)
    config_file: str | None = None  # the user's own distribution config, the base the lab overrides


@dataclass(frozen=True)
class LabSpec:
    users: tuple[User, ...] = ()
    images: tuple[SeedImage, ...] = ()
    # The blog post's fix for pushing: a plain registry sharing the mirror's storage.
    push_registry: bool = False
    seed: str = "hub-chaos"
    mirror: MirrorSettings = field(default_factory=MirrorSettings)

    def password_of(self, user: str) -> str:
        return next(u.password for u in self.users if u.name == user)


LIVE_MODE = "live: the real Docker Hub may be reached"


@dataclass(frozen=True)
class Target:
    """An existing set-up to test instead of the embedded lab."""

    mirror_url: str
    control_url: str
    proxy_url: str | None = None  # the fault proxy, for the client's own fallback to Hub
    ca_file: str | None = None  # trust for TLS through that proxy
    storage: str | None = None  # the mirror's storage folder, when readable from here
    users: tuple[User, ...] = ()
    live: bool = False  # the user said the real Docker Hub may be reached (no proxy in front of it)
    private: tuple[str, ...] = ()  # repositories private on the Hub this mirror fronts: the run checks none is cached

    def describe(self) -> str:
        """How the run and its reports name it: live mode is said wherever the target is."""
        return f"the target {self.mirror_url}" + (f" ({LIVE_MODE})" if self.live else "")


@dataclass(frozen=True)
class Repeat:
    times: int | None = None
    duration_s: float | None = None
    interval_s: float = 0.0


@dataclass(frozen=True)
class Counts:
    """Upstream requests to count (`upstream:`, `tap.counts`): per endpoint kind
    (or the totals requests and blob_bytes), among the events that pass the
    filters: from these origins, with a status in this class."""

    wanted: tuple[tuple[str, Comparison], ...]  # (endpoint kind or total, comparison)
    origins: tuple[str, ...] = ()  # chaos.vocab.names.ORIGINS; empty: any
    status: str | None = None  # "404", "4xx", or "none" (no answer reached the client); None: any

    @property
    def label(self) -> str:
        """How verdicts name the filter: `[origin=mirror,status=4xx]` or ``."""
        parts = ([f"origin={'|'.join(self.origins)}"] if self.origins else []) + ([f"status={self.status}"] if self.status else [])
        return f"[{','.join(parts)}]" if parts else ""

    def admits(self, event: dict) -> bool:
        if self.origins and event.get("origin") not in self.origins:
            return False
        if self.status is None:
            return True
        status = event.get("status")
        if self.status == "none":
            return status is None
        if status is None:
            return False
        if self.status.endswith("xx"):
            return str(status)[0] == self.status[0]
        return str(status) == self.status


@dataclass(frozen=True)
class MirrorAnswer:
    """`expect.mirror`: what the mirror itself answered the client, whatever came after."""

    ok: bool | None = None
    status: int | None = None
    error: tuple[str, ...] = ()
    message: re.Pattern | None = None

    @property
    def empty(self) -> bool:
        return self == MirrorAnswer()


@dataclass(frozen=True)
class Expectation:
    """What must hold after a step; None or empty means "not asked"."""

    ok: bool | None = None
    error: tuple[str, ...] = ()
    message: re.Pattern | None = None
    served_by: str | None = None
    from_cache: bool | None = None
    same_digest_as: str | None = None
    upstream: tuple[Counts, ...] = ()
    mirror: MirrorAnswer = field(default_factory=MirrorAnswer)
    within_s: float | None = None  # time budget for the step (each attempt, when repeated)
    success_rate: Comparison | None = None  # over repeats and images
    loc: str = ""

    @property
    def empty(self) -> bool:
        return self == Expectation(loc=self.loc)


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # a registered step kind (chaos.steps.registry)
    action: Any  # that kind's frozen action dataclass
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
    variables: dict[str, str] = field(default_factory=dict)  # the values used, secrets as ***: for the journal
    variable_names: frozenset[str] = frozenset()  # declared or used: `--var` must name one
    secrets: frozenset[str] = field(default=frozenset(), repr=False)  # passwords and secret variables' values: never written

    def all_steps(self) -> tuple[Step, ...]:
        return self.steady_state + self.steps + self.rollback

    @property
    def users(self) -> tuple[User, ...]:
        return self.target.users if self.target else self.lab.users
