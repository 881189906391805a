"""One root exception; each class carries the exit code the CLI turns it into.

Library code raises these; only chaos.cli prints them and exits.
"""

from __future__ import annotations

MAX_QUOTED = 60
"""Longest quoted value in a message: user input can be megabytes (a YAML alias bomb)."""
MAX_MESSAGE = 4000
"""Longest message: enough for a component's log tail, never a screenful of input."""


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """repr(value) for a message, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    half = MAX_MESSAGE // 2
    return f"{message[:half]} ... ({len(message) - MAX_MESSAGE} characters cut) ... {message[-half:]}"


class ChaosError(Exception):
    """Root of every error hub-chaos reports to a user."""

    exit_code = 1

    def __init__(self, message: str):
        message = _bounded(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ChaosError):
    """Bad scenario, option or argument (exit 2)."""

    exit_code = 2


class ScenarioError(UsageError):
    """A scenario file is malformed; the message starts with file:line."""


class BadReference(UsageError):
    """An image reference that does not parse."""


class EnvironmentProblem(ChaosError):
    """The machine cannot run what was asked: a missing binary, a port in use,
    a component that would not start (exit 3)."""

    exit_code = 3


class ComponentFailed(EnvironmentProblem):
    """A lab component died or never became ready; the message carries its log tail."""


class PortInUse(ComponentFailed):
    """A lab component died because its port was taken between the choice and its bind."""

    def __init__(self, message: str, component: str, port: int):
        super().__init__(message)
        self.component = component
        self.port = port
