"""Scenario files, parsed: frozen dataclasses the runner consumes.

The runner never sees YAML; everything here is validated and typed, and every
element keeps `loc` ("file:line") so runtime verdicts can point back at the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from chaos.reference import ImageReference


@dataclass(frozen=True)
class User:
    name: str
    password: str


@dataclass(frozen=True)
class SeedImage:
    """An image the lab hub holds before the run starts."""

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
class Expectation:
    """What must hold after a step; None means "not asked"."""

    ok: bool | None = None
    error: tuple[str, ...] = ()
    message: re.Pattern | None = None
    served_by: str | None = None
    from_cache: bool | None = None
    same_digest_as: str | None = None
    upstream: tuple[tuple[str, int], ...] = ()  # (endpoint kind or "blob_bytes", exact count)
    loc: str = ""

    @property
    def empty(self) -> bool:
        return self == Expectation(loc=self.loc)


@dataclass(frozen=True)
class PullAction:
    image: ImageReference
    login: str | None = None


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


@dataclass(frozen=True)
class FaultAction:
    spec: dict[str, Any]  # validated by chaos.faults; sent as-is to the control API

    @property
    def name(self) -> str:
        return self.spec["name"]


@dataclass(frozen=True)
class ClearAction:
    names: tuple[str, ...] = ()  # empty: every fault


Action = PullAction | PushAction | CheckAction | FaultAction | ClearAction


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # "pull", "push", "check", "fault", "clear"
    action: Action
    expect: Expectation
    timeout_s: float
    loc: str
    description: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    lab: LabSpec
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)
