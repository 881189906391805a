"""journal.json: the complete record of a run. Reports are rendered from it alone.

Format 2. Top level:

    format          2
    scenario        {name, description, path, tags, variables}
    engine          the run's engine (builtin, docker, skopeo, containerd)
    where           "the embedded lab" or "the target <mirror URL>" (with
                    "(live: the real Docker Hub may be reached)" in live mode)
    run_dir         the run folder as the run named it
    status          running | completed | failed | aborted | interrupted | killed
                    (a run that was SIGKILLed leaves "running"; the next
                    `chaos run` or `chaos report` finds its process gone and
                    says "killed")
    pid             the chaos process that ran it
    pid_proof       {start_time, boot_id}: what tells that process from a later
                    one given the same pid (its start time after this boot)
    deviated        the steady state held before the faults but not after recovery
    error           why the run stopped early, or null
    started, ended  RFC 3339; seconds
    lab             the lab's URLs and ports (never passwords)
    plan            [{name, phase, kind, description}]: every step the run meant to take
    fault_windows   [{name, kind, spec, on, off, on_step, off_step}]: when each fault was on
    steps           [step record, see StepRecord]
    findings        [{kind, says, ...}]: what the run found whatever the scenario
                    asked: private-content-cached (repository, where: catalog,
                    storage), private-content-unknown (repositories: the
                    catalog could not be read)

Each step record: index, name, phase, kind, loc, description, inputs, expect
(the expectations as written, one text each), started, ended, seconds,
outcome (see chaos.steps.outcome.Outcome.to_dict: ok, summary, error_code,
message, seconds, results [per attempt], details), verdicts [{what, expected,
actual, ok}], passed, faults_active [names], events [the fault proxy's tap
events of requests the step started; `late: true` on one that ended during a
later step], held [requests still in flight when the step ended],
components_down {component: why}, mirror (catalog, stored repositories,
storage bytes after the step), diagnosis ({summary, chain: [{link, text}]}:
why a failed or fallen-back step came out so, see chaos.report.diagnosis),
error.

This module is the format's one definition: the runner writes it, reports
read it, and it depends on nothing else of chaos.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
STATUSES = ("running", "completed", "failed", "aborted", "interrupted", "killed")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JournalError(ValueError):
    """A file that is not a journal this version can read."""


class Redactor:
    """Replaces secrets (passwords, secret variables' values) wherever they
    appear in text the tool writes. Secrets shorter than MIN_SECRET are left
    alone: scrubbing "a" from every word would destroy the record."""

    MIN_SECRET = 3
    MASK = "***"

    def __init__(self, secrets: frozenset[str] | set[str] = frozenset()):
        # Longest first: a secret that contains another is masked whole.
        self.secrets = sorted((s for s in secrets if len(s) >= self.MIN_SECRET), key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, self.MASK)
        return value

    def data(self, value: Any) -> Any:
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


@dataclass(frozen=True)
class Verdict:
    """One thing a step was expected to do, what it actually did, and whether that held."""

    what: str
    expected: Any
    actual: Any
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlannedStep:
    name: str
    phase: str
    kind: str
    description: str


@dataclass
class FaultWindow:
    """When a fault was on: switched on by a step, off by a step, a reset or the run's end."""

    name: str
    kind: str
    spec: dict[str, Any]
    on: str  # RFC 3339
    on_step: str
    off: str | None = None
    off_step: str | None = None  # the step that switched it off; None: the run's end, or it expired
    expires_at: float | None = None  # unix time the fault would have expired on its own


@dataclass
class StepRecord:
    index: int
    name: str
    phase: str  # steady_state_before | steps | rollback | steady_state_after
    kind: str
    loc: str
    description: str
    inputs: dict[str, Any] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)
    started: str = ""
    ended: str = ""
    seconds: float = 0.0
    outcome: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    passed: bool = False
    faults_active: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)  # requests still in flight through the proxy when the step ended
    components_down: dict[str, str] = field(default_factory=dict)  # lab component -> why it is not running
    mirror: dict[str, Any] = field(default_factory=dict)
    diagnosis: dict[str, Any] | None = None  # why it came out so: {summary, chain: [{link, text}]}
    error: str | None = None

    @property
    def failed_verdicts(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["verdicts"] = [v.to_dict() for v in self.verdicts]
        out["seconds"] = round(self.seconds, 3)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["verdicts"] = [Verdict(**v) for v in data.get("verdicts", [])]
        return cls(**values)


@dataclass
class Journal:
    scenario: dict[str, Any]
    engine: str = "builtin"
    where: str = "the embedded lab"
    run_dir: str = ""
    status: str = "running"
    started: str = field(default_factory=now_iso)
    ended: str = ""
    seconds: float = 0.0
    lab: dict[str, Any] = field(default_factory=dict)
    plan: list[PlannedStep] = field(default_factory=list)
    fault_windows: list[FaultWindow] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    error: str | None = None
    deviated: bool = False
    findings: list[dict[str, Any]] = field(default_factory=list)  # what the run found whatever the scenario asked
    pid: int = field(default_factory=os.getpid)
    pid_proof: dict[str, Any] = field(default_factory=dict)  # {start_time, boot_id}: chaos.runner.run_folders
    # Never written: masks passwords and secret variables in everything written.
    redactor: Redactor = field(default_factory=lambda: Redactor(), repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.scenario.get("name", "?"))

    @property
    def failed_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if not s.passed]

    @property
    def passed(self) -> bool:
        return self.status == "completed"

    def to_dict(self) -> dict[str, Any]:
        return self.redactor.data({
            "format": FORMAT_VERSION,
            "scenario": self.scenario,
            "engine": self.engine,
            "where": self.where,
            "run_dir": self.run_dir,
            "status": self.status,
            "deviated": self.deviated,
            "error": self.error,
            "started": self.started,
            "ended": self.ended,
            "seconds": round(self.seconds, 3),
            "lab": self.lab,
            "plan": [asdict(p) for p in self.plan],
            "fault_windows": [asdict(w) for w in self.fault_windows],
            "steps": [s.to_dict() for s in self.steps],
            "findings": self.findings,
            "pid": self.pid,
            "pid_proof": self.pid_proof,
        })

    @classmethod
    def from_dict(cls, data: Any) -> Journal:
        if not isinstance(data, dict) or "steps" not in data or "scenario" not in data:
            raise JournalError("not a hub-chaos journal (no scenario and steps)")
        version = data.get("format")
        if version != FORMAT_VERSION:
            raise JournalError(f"journal format {version!r}; this version of hub-chaos reads format {FORMAT_VERSION}")
        try:
            return cls(
                scenario=data["scenario"],
                engine=data.get("engine", "builtin"),
                where=data.get("where", "the embedded lab"),
                run_dir=data.get("run_dir", ""),
                status=data.get("status", "running"),
                started=data.get("started", ""),
                ended=data.get("ended", ""),
                seconds=float(data.get("seconds", 0.0)),
                lab=data.get("lab", {}),
                plan=[PlannedStep(**p) for p in data.get("plan", [])],
                fault_windows=[FaultWindow(**w) for w in data.get("fault_windows", [])],
                steps=[StepRecord.from_dict(s) for s in data["steps"]],
                error=data.get("error"),
                deviated=bool(data.get("deviated", False)),
                findings=list(data.get("findings", [])),
                pid=int(data.get("pid", 0)),
                pid_proof=dict(data.get("pid_proof") or {}),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise JournalError(f"malformed journal: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> Journal:
        """Read a journal file; JournalError naming the problem."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise JournalError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise JournalError(f"{path} is not JSON: {exc}") from None
        return cls.from_dict(data)

    def write(self, path: Path) -> None:
        """Replace `path` atomically: a reader (or a kill) never sees half a journal."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        tmp.replace(path)

