"""journal.json: the record of a run that reports and CI read.

Format version 1. Top level: format, scenario {name, description, path},
status (completed | failed | aborted | interrupted), deviated, error,
started/ended (RFC 3339), seconds, lab (urls), steps[]. Each step: name,
phase (steady_state_before | steps | rollback | steady_state_after), kind, loc, inputs, started,
ended, seconds, outcome (the engine's result), verdicts [{what, expected,
actual, ok}], passed, faults_active [names], events [the tap's upstream
events during the step], mirror (catalog, stored repositories, storage bytes
after the step), error (a text when the step could not run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class StepRecord:
    name: str
    kind: str
    loc: str
    inputs: dict[str, Any]
    started: str = ""
    ended: str = ""
    seconds: float = 0.0
    outcome: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    passed: bool = False
    faults_active: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    mirror: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    phase: str = "steps"  # steady_state_before | steps | rollback | steady_state_after


@dataclass
class Journal:
    scenario: dict[str, Any]
    status: str = "running"
    started: str = field(default_factory=now_iso)
    ended: str = ""
    seconds: float = 0.0
    lab: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    error: str | None = None
    deviated: bool = False  # the steady state held before the faults but not after recovery

    @property
    def failed_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if not s.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "scenario": self.scenario,
            "status": self.status,
            "started": self.started,
            "ended": self.ended,
            "seconds": round(self.seconds, 3),
            "lab": self.lab,
            "error": self.error,
            "deviated": self.deviated,
            "steps": [vars(step) for step in self.steps],
        }

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        tmp.replace(path)
