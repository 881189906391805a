"""Run a parsed scenario against a lab (or an external target) and keep the journal.

Phases: steady_state (before), steps, rollback, steady_state (after). For each
step: note the tap cursor, act within the step's deadline, read the upstream
events the step caused, take a snapshot of the mirror, judge the
expectations. Faults are cleared before the rollback and again at the very end,
however the run ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from chaos.vocab.codes import TIMEOUT
from chaos.errors import ChaosError
from chaos.lab.layout import LabState
from chaos.proxy.control_client import ControlClient
from chaos.runner import mirror_probe
from chaos.runner.actions import StepActions
from chaos.runner.deadline import DeadlineExceeded, call_with_deadline
from chaos.runner.expectations import Verdict
from chaos.runner.journal import Journal, StepRecord, now_iso
from chaos.runner.quiet import wait_for_quiet
from chaos.scenario.model import CheckAction, Scenario, Step

BEFORE, STEPS, ROLLBACK, AFTER = "steady_state_before", "steps", "rollback", "steady_state_after"


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        lab: LabState,
        run_dir: Path,
        *,
        lab_handle=None,  # chaos.lab.lab.Lab when the embedded lab runs: restart and publish need it
        engine: str = "builtin",
        on_step_start: Callable[[int, Step], None] = lambda index, step: None,
        on_step_end: Callable[[int, Step, StepRecord], None] = lambda index, step, record: None,
        progress: Callable[[str], None] = lambda message: None,
    ):
        self.scenario = scenario
        self.lab = lab
        self.run_dir = run_dir
        self.control = ControlClient(lab.control_url, timeout=5.0)
        self.on_step_start = on_step_start
        self.on_step_end = on_step_end
        self.progress = progress
        self.digests: dict[str, str | None] = {}
        self.snapshots: dict[str, mirror_probe.MirrorSnapshot] = {}
        self.step_cursors: dict[str, int] = {}  # tap cursor when each step started
        self.active_faults: list[str] = []
        self.journal = Journal(
            scenario={"name": scenario.name, "description": scenario.description, "path": scenario.path,
                      "tags": list(scenario.tags), "variables": scenario.variables},
            lab={k: v for k, v in vars(lab).items() if k not in ("users", "process_groups")},
        )
        self.actions = StepActions(self, lab_handle=lab_handle, engine=engine)
        self._cursor = 0
        self._start_cursor = 0
        # Steps whose storage size a later check compares against: their
        # snapshot must wait for the mirror's background writes to land.
        self._compared = set()
        for step in scenario.all_steps():
            check = step.action if isinstance(step.action, CheckAction) else getattr(step.action, "until", None)
            if check is not None:
                self._compared |= {n for n in (check.storage_unchanged_since, check.catalog_unchanged_since, check.storage_grew_since) if n}
        self._index = 0
        # Set on Ctrl-C: waits and repeats in the abandoned step stop early.
        self.cancelled = threading.Event()

    @property
    def journal_path(self) -> Path:
        return self.run_dir / "journal.json"

    @property
    def total_steps(self) -> int:
        return len(self.scenario.steady_state) * 2 + len(self.scenario.steps) + len(self.scenario.rollback)

    def run(self) -> Journal:
        started = time.monotonic()
        self._cursor = self._start_cursor = self._latest_cursor()
        interrupted = False
        try:
            try:
                held_before = self._run_phase(BEFORE, self.scenario.steady_state)
                if held_before:
                    self._run_phase(STEPS, self.scenario.steps)
                else:
                    self.journal.error = "the steady state did not hold before any fault; steps skipped"
            except KeyboardInterrupt:
                interrupted = True
                self.cancelled.set()
            # Rollback always runs, with every fault cleared first.
            self._clear_faults()
            try:
                self._run_phase(ROLLBACK, self.scenario.rollback)
                if not interrupted and self.scenario.steady_state and held_before:
                    self.journal.deviated = not self._run_phase(AFTER, self.scenario.steady_state)
            except KeyboardInterrupt:
                interrupted = True
            if interrupted:
                self.journal.status = "interrupted"
            else:
                self.journal.status = "failed" if self.journal.failed_steps else "completed"
        except ChaosError as exc:
            self.journal.status = "aborted"
            self.journal.error = str(exc)
            raise
        finally:
            self._clear_faults()
            self.journal.ended = now_iso()
            self.journal.seconds = time.monotonic() - started
            self.journal.write(self.journal_path)
        if interrupted:
            raise KeyboardInterrupt
        return self.journal

    def _run_phase(self, phase: str, steps: tuple[Step, ...]) -> bool:
        held = True
        for step in steps:
            self.on_step_start(self._index, step)
            record = self._run_step(step)
            record.phase = phase
            self.journal.steps.append(record)
            self.journal.write(self.journal_path)
            self.on_step_end(self._index, step, record)
            self._index += 1
            held = held and record.passed
        return held

    # -- one step ------------------------------------------------------------

    def _run_step(self, step: Step) -> StepRecord:
        record = StepRecord(name=step.name, kind=step.kind, loc=step.loc, inputs=self.actions.inputs(step))
        record.started = now_iso()
        record.faults_active = list(self.active_faults)
        self.step_cursors[step.name] = self._cursor
        started = time.monotonic()
        deadline = started + step.timeout_s
        try:
            if step.kind == "restart":
                # On this (the main) thread: a child's PR_SET_PDEATHSIG fires when the
                # *thread* that started it ends, so a restarted component must not be
                # started from a short-lived step thread. Its readiness has its own deadline.
                outcome, verdicts = self.actions.run(step, deadline)
            else:
                # The action watches the deadline itself; the extra second is for a stuck client.
                outcome, verdicts = call_with_deadline(lambda: self.actions.run(step, deadline), step.timeout_s + 1.0, step.name)
        except DeadlineExceeded:
            # The stuck thread is abandoned (a daemon; its client has its own timeouts).
            outcome = {"ok": False, "error_code": TIMEOUT, "message": f"step did not finish within its {step.timeout_s:g}s deadline"}
            verdicts = [Verdict("deadline", f"<= {step.timeout_s:g}s", "exceeded", False)]
        except ChaosError as exc:
            # A step that cannot act (a control API error, a component that
            # would not restart) fails with the reason; the run goes on to its rollback.
            outcome = {"ok": False, "error_code": type(exc).__name__, "message": str(exc)}
            verdicts = [Verdict("step ran", True, str(exc), False)]
            record.error = str(exc)
        record.seconds = time.monotonic() - started
        record.ended = now_iso()
        record.outcome = outcome
        record.events = self._events_since_cursor()
        if step.kind in ("pull", "push"):
            verdicts = self.actions.judge(step, outcome, record.events)
        self.digests[step.name] = _first_digest(outcome)
        record.verdicts = [v.to_dict() for v in verdicts]
        record.passed = all(v.ok for v in verdicts)
        snap = self.snapshot(settle=step.name in self._compared or step.kind == "check")
        if snap is not None:
            self.snapshots[step.name] = snap
            record.mirror = snap.to_dict()
        return record

    # -- shared with actions -------------------------------------------------

    def snapshot(self, *, settle: bool = False) -> mirror_probe.MirrorSnapshot | None:
        if not self.lab.mirror_url:
            return None
        return mirror_probe.snapshot(self.lab.mirror_url, self._mirror_storage, settle=settle)

    def events_since(self, step_name: str) -> list[dict]:
        """Every tap event since the named step started ("start": since the run began)."""
        cursor = self._start_cursor if step_name == "start" else self.step_cursors[step_name]
        return self._drain(cursor)[0]

    def proxy_restarted(self) -> None:
        """The fault proxy restarted: its tap starts again at 0 and its faults are gone.
        Tap counts that span the restart see only what came after it."""
        self._cursor = self._start_cursor = 0
        self.step_cursors = {name: 0 for name in self.step_cursors}
        self.active_faults = []

    # -- plumbing ------------------------------------------------------------

    def _latest_cursor(self) -> int:
        return self._drain(0)[1]

    def _drain(self, cursor: int) -> tuple[list[dict], int]:
        events: list[dict] = []
        for _ in range(1000):  # bounded: at most a million events
            page = self.control.events(after=cursor, limit=1000)
            events.extend(page.events)
            cursor = page.next
            if len(page.events) < 1000:
                break
        return events, cursor

    def _events_since_cursor(self) -> list[dict]:
        self._wait_for_quiet_lab()
        events, self._cursor = self._drain(self._cursor)
        return events

    @property
    def _mirror_storage(self) -> Path | None:
        """The mirror's storage folder, when it is ours to read (the lab's, or a target's given one)."""
        return Path(self.lab.mirror_storage) if self.lab.mirror_storage else None

    def _wait_for_quiet_lab(self) -> None:
        wait_for_quiet(lambda: self.control.health().get("in_flight", 0), self._mirror_storage)

    def _clear_faults(self) -> None:
        """A fault must never outlive its run, whatever ended the run."""
        try:
            self.control.reset()
        except Exception as exc:  # noqa: BLE001 - report, but keep tearing down
            self.progress(f"warning: could not clear faults on {self.lab.control_url}: {exc}")
        self.active_faults = []


def _first_digest(outcome: dict) -> str | None:
    if "results" in outcome:
        for attempt in outcome["results"]:
            if attempt.get("digest"):
                return attempt["digest"]
        return None
    return outcome.get("digest")
