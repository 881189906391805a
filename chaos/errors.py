"""One root exception; each class carries the exit code the CLI turns it into.

Library code raises these; only chaos.cli prints them and exits.
"""

from __future__ import annotations


class ChaosError(Exception):
    """Root of every error hub-chaos reports to a user."""

    exit_code = 1

    def __init__(self, message: str):
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
