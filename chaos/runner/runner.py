"""Run a parsed scenario against a lab (or an external target) and keep the journal.

Phases: steady_state (before), steps, rollback, steady_state (after). For each
step: note the tap cursor, let its kind act within the step's deadline (on a
daemon thread, or the main thread for kinds that start processes), wait for
the lab to go quiet, read the upstream events the step caused, judge the
expectations, take a snapshot of the mirror, append to the journal. Faults
are cleared before the rollback and again at the very end, however the run
ends. Progress goes to the `chaos.runner` logger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from chaos.clients.mirror_probe import MirrorSnapshot
from chaos.errors import ChaosError
from chaos.journal import Journal, PlannedStep, Redactor, StepRecord, Verdict, now_iso
from chaos.language.model import Scenario, Step
from chaos.report.diagnosis import diagnose
from chaos.runner.context import RunContext
from chaos.runner.environment import RunEnvironment
from chaos.runner.faultbook import FaultBook
from chaos.runner.quiet import wait_for_quiet
from chaos.runner.run_folders import own_process_proof
from chaos.runner.tap_reader import TapReader
from chaos.steps.deadline import DeadlineExceeded, call_with_deadline
from chaos.steps.outcome import Outcome
from chaos.steps.parse import describe
from chaos.steps.registry import kinds
from chaos.steps.verdicts import Evidence, expectation_texts
from chaos.vocab.codes import STEP_ERROR, TIMEOUT

log = logging.getLogger(__name__)

BEFORE, STEPS, ROLLBACK, AFTER = "steady_state_before", "steps", "rollback", "steady_state_after"
# Beyond the step's own deadline (which its kind watches), for a client stuck where it cannot.
DEADLINE_GRACE_S = 1.0


def phases(scenario: Scenario) -> list[tuple[str, tuple[Step, ...]]]:
    """The steps a run means to take, phase by phase (the steady state twice)."""
    return [(BEFORE, scenario.steady_state), (STEPS, scenario.steps), (ROLLBACK, scenario.rollback),
            (AFTER, scenario.steady_state)]


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        env: RunEnvironment,
        run_dir: Path,
        *,
        engine: str = "builtin",
        where: str = "the embedded lab",
        on_step_end: Callable[[StepRecord], None] = lambda record: None,
    ):
        self.scenario = scenario
        self.env = env
        self.run_dir = run_dir
        self.engine = engine
        self.on_step_end = on_step_end
        self.journal = Journal(
            scenario={"name": scenario.name, "description": scenario.description, "path": scenario.path,
                      "tags": list(scenario.tags), "variables": scenario.variables},
            engine=engine,
            where=where,
            run_dir=str(run_dir),
            lab={k: v for k, v in vars(env.state).items() if k not in ("users", "process_groups")},
            plan=[PlannedStep(step.name, phase, step.kind, describe(step)) for phase, steps in phases(scenario) for step in steps],
            redactor=Redactor(scenario.secrets),
            pid_proof=own_process_proof(),
        )
        self.faults = FaultBook(env.control, self.journal)
        self.tap = TapReader(env.control, self._wait_for_quiet)
        self.digests: dict[str, str | None] = {}
        self.snapshots: dict[str, MirrorSnapshot] = {}
        self._starts: list[tuple[float, StepRecord]] = []  # wall-clock start of each step run so far
        # Steps whose storage size a later step compares against: their
        # snapshot must wait for the mirror's background writes to land.
        self._settle = {name for step in scenario.all_steps() for name in kinds()[step.kind].settled_snapshots(step.action)}
        # Set on Ctrl-C: waits and repeats in the abandoned step stop early.
        self.cancelled = threading.Event()

    @property
    def journal_path(self) -> Path:
        return self.run_dir / "journal.json"

    @property
    def total_steps(self) -> int:
        return len(self.journal.plan)

    def run(self) -> Journal:
        started = time.monotonic()
        self.journal.write(self.journal_path)
        interrupted = False
        try:
            self.tap.begin()
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
                self.journal.findings = self._private_content_findings()
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
            raw, started_at = self._run_step(step, phase)
            # Secrets never reach the journal nor the console: masked before either sees the record.
            record = StepRecord.from_dict(self.journal.redactor.data(raw.to_dict()))
            self._starts.append((started_at, record))
            self.journal.steps.append(record)
            self.journal.write(self.journal_path)
            self.on_step_end(record)
            held = held and record.passed
        return held

    # -- one step ------------------------------------------------------------

    def _run_step(self, step: Step, phase: str) -> tuple[StepRecord, float]:
        """The step's record, and when it started (wall clock, as the tap's timestamps)."""
        kind = kinds()[step.kind]
        inputs = {**kind.inputs(step.action), "timeout_s": step.timeout_s}
        if step.repeat:
            inputs["repeat"] = vars(step.repeat)
        record = StepRecord(
            index=len(self.journal.steps), name=step.name, phase=phase, kind=step.kind, loc=step.loc,
            description=describe(step), inputs={k: v for k, v in inputs.items() if v is not None},
            expect=expectation_texts(step.expect), started=now_iso(), faults_active=self.faults.on,
        )
        log.debug(f"step {step.name}: {record.description}")
        self.tap.step_started(step.name)
        self.faults.step = step.name
        started = time.monotonic()
        started_at = time.time()
        context = RunContext(
            self.env, deadline=started + step.timeout_s, cancelled=self.cancelled, run_engine=self.engine,
            faults=self.faults, tap=self.tap, snapshots=self.snapshots,
        )
        cut_short = False
        try:
            if kind.on_main_thread:
                # A child's PR_SET_PDEATHSIG fires when the *thread* that started
                # it ends: a restarted component must not be started from a
                # short-lived step thread. Its readiness has its own deadline.
                outcome = kind.run(step, step.action, context)
            else:
                outcome = call_with_deadline(lambda: kind.run(step, step.action, context), step.timeout_s + DEADLINE_GRACE_S, step.name)
        except DeadlineExceeded:
            # The stuck thread is abandoned (a daemon; its client has its own timeouts).
            cut_short = True
            outcome = Outcome(kind.name, ok=False, error_code=TIMEOUT,
                              message=f"step did not finish within its {step.timeout_s:g}s deadline",
                              verdicts=(Verdict("deadline", f"<= {step.timeout_s:g}s", "exceeded", False),))
        except ChaosError as exc:
            # A step that cannot act (a control API error, a component that
            # would not restart) fails with the reason; the run goes on to its rollback.
            cut_short = True
            outcome = Outcome(kind.name, ok=False, error_code=STEP_ERROR, message=str(exc),
                              verdicts=(Verdict("step ran", True, str(exc), False),))
            record.error = str(exc)
        record.seconds = time.monotonic() - started
        record.ended = now_iso()
        record.events = self._own_events(self.tap.step_events(), started_at)
        record.held = self._held_since(started_at)
        if self.env.lab is not None:
            record.components_down = self.env.lab.problems()
        if cut_short and not kind.judged_when_cut_short:
            verdicts = list(outcome.verdicts)
        else:
            verdicts = kind.judge(step, outcome, Evidence(events=record.events, digests=self.digests))
        self.digests[step.name] = outcome.digest
        record.outcome = outcome.to_dict(summary=kind.summary(outcome))
        record.verdicts = verdicts
        record.passed = all(v.ok for v in verdicts)
        found = diagnose(record, {w.name: w.kind for w in self.journal.fault_windows})
        record.diagnosis = found.to_dict() if found else None
        snap = self.env.probe.snapshot(settle=step.name in self._settle or kind.settles_mirror)
        if snap is not None:
            self.snapshots[step.name] = snap
            record.mirror = snap.to_dict()
        return record, started_at

    # -- plumbing ------------------------------------------------------------

    def _own_events(self, events: list[dict], started_at: float) -> list[dict]:
        """The step's own events. A request an earlier step started and held
        open (a blackhole, a stalled body) reaches the tap only when it ends:
        it belongs to the step that started it, marked late, not to this one."""
        own = []
        for event in events:
            ts = event.get("ts")
            if ts is None or ts >= started_at or not self._starts:
                own.append(event)
                continue
            earlier = [record for start, record in self._starts if start <= ts]
            owner = earlier[-1] if earlier else self._starts[0][1]
            owner.events.append(self.journal.redactor.data({**event, "late": True}))
        return own

    def _held_since(self, started_at: float) -> list[dict]:
        """The requests this step started that were still open when it ended
        (a blackhole holds them past any wait): the diagnosis names them, and
        their events join this step, marked late, once they end."""
        try:
            held = self.env.control.in_flight_requests()
        except ChaosError as exc:
            log.warning(f"step's open requests unknown: {exc}")
            return []
        return [request for request in held if request.get("ts", started_at) >= started_at]

    def _private_content_findings(self) -> list[dict]:
        """Whatever the scenario asked: is any repository that is private on the
        hub in the mirror's catalog or storage? (A finding, not a failure: the
        credentialed-mirror scenario shows exactly that.)"""
        private = {image.ref.repository for image in self.scenario.lab.images if image.private}
        private |= set(self.scenario.target.private if self.scenario.target else ())
        private |= {r for s in self.scenario.all_steps() for r in kinds()[s.kind].private_repositories(s.action)}
        if not private:
            return []
        snap = self.env.probe.snapshot(settle=True)
        if snap is None:
            return []
        findings = []
        if snap.catalog_error:
            # No finding must not read as "nothing private cached" when nobody could look.
            looked = "its storage only" if snap.storage_checked else "neither (no storage folder to read)"
            findings.append({
                "kind": "private-content-unknown", "repositories": sorted(private),
                "says": f"could not read the mirror's catalog to look for private repositories "
                        f"({', '.join(sorted(private))}): {snap.catalog_error}; looked in {looked}",
            })
        for repository in sorted(private):
            where = [w.removeprefix("in_") for w, found in snap.holds(repository).items() if found]
            if where:
                findings.append({
                    "kind": "private-content-cached", "repository": repository, "where": where,
                    "says": f"private repository {repository} is in the mirror's {' and '.join(where)}: "
                            "anyone who can reach the mirror can pull it",
                })
        return findings

    def _wait_for_quiet(self) -> bool:
        return wait_for_quiet(lambda: self.env.control.health().get("in_flight", 0), self.env.probe.live_uploads)

    def _clear_faults(self) -> None:
        """A fault must never outlive its run, whatever ended the run."""
        try:
            self.env.control.reset()
        except Exception as exc:  # noqa: BLE001 - report, but keep tearing down
            log.warning(f"could not clear faults on {self.env.state.control_url}: {exc}")
        self.faults.closed_all(by_step=None)
