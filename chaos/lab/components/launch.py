"""What every launcher returns: how to start one component and how to tell it
is ready, with nothing left to the caller but starting it.

A Launch is plain data (argv, environment, readiness check, log path), so the
lab can keep it and restart the component exactly as it first started it, and
the benchmarks start the very same command lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from chaos.lab.process import ManagedProcess

LOOPBACK = "127.0.0.1"
READY_DEADLINE_S = 30.0
# What a child may inherit: the user's proxy settings (HTTPS_PROXY, NO_PROXY...)
# must never leak into the lab, where each component says its own.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited variables that are set, plus extra."""
    env = {name: value for name, value in os.environ.items() if name in INHERITED_ENV}
    env.update(extra or {})
    return env


def loopback_url(port: int, scheme: str = "http") -> str:
    return f"{scheme}://{LOOPBACK}:{port}"


def http_answers(url: str) -> Callable[[], bool]:
    """Ready once anything answers HTTP at url (the hub answers /v2/ with 401)."""

    def check() -> bool:
        requests.get(url, timeout=1.0)
        return True

    return check


def http_ok(url: str, *, verify: bool | str = True) -> Callable[[], bool]:
    """Ready once GET url answers 2xx."""
    return lambda: requests.get(url, timeout=1.0, verify=verify).ok


@dataclass(frozen=True)
class Launch:
    """One component's launch: `name` also names its process and log."""

    name: str
    argv: tuple[str, ...]
    ready: Callable[[], bool] = field(compare=False)
    log_path: Path
    url: str = ""  # where it answers, once ready
    env: Mapping[str, str] = field(default_factory=clean_env)
    ports: tuple[int, ...] = ()  # where it listens: ready once its own process holds each

    def process(self, *, tie_to_parent: bool = True) -> ManagedProcess:
        """A ManagedProcess for this launch, not yet started."""
        return ManagedProcess(self.name, self.argv, self.log_path, env=self.env, tie_to_parent=tie_to_parent,
                              ports=self.ports)
