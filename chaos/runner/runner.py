"""Run a parsed scenario against a running lab and keep the journal.

For each step: note the tap cursor, act (pull, push, check, fault, clear)
within the step's deadline, read the upstream events the step caused, take a
snapshot of the mirror, judge the expectations. Faults are cleared when the
run ends, however it ends.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

import requests

from chaos.clients.builtin import BuiltinClient
from chaos.clients.pusher import push
from chaos.clients.result import TIMEOUT
from chaos.errors import ChaosError
from chaos.lab.layout import LabState
from chaos.proxy.control_client import ControlClient
from chaos.runner import mirror_probe
from chaos.runner.expectations import Verdict, evaluate
from chaos.runner.journal import Journal, StepRecord, now_iso
from chaos.scenario.model import (
    CheckAction,
    ClearAction,
    FaultAction,
    PullAction,
    PushAction,
    Scenario,
    Step,
)

CLIENT_TIMEOUT_S = 20.0


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        lab: LabState,
        run_dir: Path,
        *,
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
        self.active_faults: list[str] = []
        self.journal = Journal(
            scenario={"name": scenario.name, "description": scenario.description, "path": scenario.path},
            lab={k: v for k, v in vars(lab).items() if k not in ("users", "process_groups")},
        )
        self._cursor = 0
        # Steps whose storage size a later check compares against: their
        # snapshot must wait for the mirror's background writes to land.
        self._compared = {
            name
            for step in scenario.steps
            if isinstance(step.action, CheckAction)
            for name in (step.action.storage_unchanged_since, step.action.catalog_unchanged_since)
            if name
        }
        # One worker: steps run one at a time; the pool lets a deadline bound each.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="step")

    @property
    def journal_path(self) -> Path:
        return self.run_dir / "journal.json"

    def run(self) -> Journal:
        started = time.monotonic()
        self._cursor = self._latest_cursor()
        try:
            for index, step in enumerate(self.scenario.steps):
                self.on_step_start(index, step)
                record = self._run_step(step)
                self.journal.steps.append(record)
                self.journal.write(self.journal_path)
                self.on_step_end(index, step, record)
            self.journal.status = "failed" if self.journal.failed_steps else "completed"
        except KeyboardInterrupt:
            self.journal.status = "interrupted"
            raise
        except ChaosError as exc:
            self.journal.status = "aborted"
            self.journal.error = str(exc)
            raise
        finally:
            self._clear_faults()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.journal.ended = now_iso()
            self.journal.seconds = time.monotonic() - started
            self.journal.write(self.journal_path)
        return self.journal

    # -- one step ------------------------------------------------------------

    def _run_step(self, step: Step) -> StepRecord:
        record = StepRecord(name=step.name, kind=step.kind, loc=step.loc, inputs=_inputs(step))
        record.started = now_iso()
        record.faults_active = list(self.active_faults)
        started = time.monotonic()
        future = self._pool.submit(self._act, step)
        try:
            outcome, verdicts = future.result(timeout=step.timeout_s)
        except concurrent.futures.TimeoutError:
            outcome = {"ok": False, "error_code": TIMEOUT, "message": f"step did not finish within its {step.timeout_s:g}s deadline"}
            verdicts = [Verdict("deadline", f"<= {step.timeout_s:g}s", "exceeded", False)]
            # The stuck worker is abandoned (its client has its own timeouts); later steps get a fresh one.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="step")
        record.seconds = time.monotonic() - started
        record.ended = now_iso()
        record.events = self._events_since_cursor()
        if step.kind in ("pull", "push"):
            verdicts = evaluate(step.expect, outcome, record.events, self.digests)
            self.digests[step.name] = outcome.get("digest")
        record.outcome = outcome
        record.verdicts = [v.to_dict() for v in verdicts]
        record.passed = all(v.ok for v in verdicts)
        snap = self._snapshot(settle=step.name in self._compared or step.kind == "check")
        if snap is not None:
            self.snapshots[step.name] = snap
            record.mirror = snap.to_dict()
        return record

    def _act(self, step: Step) -> tuple[dict, list[Verdict]]:
        action = step.action
        if isinstance(action, PullAction):
            return self._pull(action, step).to_dict(), []
        if isinstance(action, PushAction):
            return self._push(action).to_dict(), []
        if isinstance(action, CheckAction):
            return self._check(action, step)
        if isinstance(action, FaultAction):
            return self._fault(action, step)
        if isinstance(action, ClearAction):
            return self._clear(action, step)
        raise AssertionError(f"unhandled step kind {step.kind}")

    def _pull(self, action: PullAction, step: Step):
        credentials = (action.login, self.lab.users[action.login]) if action.login else None
        client = BuiltinClient(
            mirror_url=self.lab.mirror_url,
            proxy_url=self.lab.proxy_url or None,
            ca_file=self.lab.ca_file or None,
            credentials=credentials,
            # A blob is tried up to 3 times (as dockerd does): keep them all inside the step deadline.
            timeout=min(CLIENT_TIMEOUT_S, step.timeout_s / 4),
            progress=self.progress,
        )
        return client.pull(action.image)

    def _push(self, action: PushAction):
        headers = None
        if action.to == "mirror":
            url = self.lab.mirror_url
        elif action.to == "push-registry":
            if not self.lab.push_registry_url:
                raise ChaosError("push to push-registry: the lab has no push registry (set lab.push_registry: true)")
            url = self.lab.push_registry_url
        else:
            url = self.lab.hub_url
            headers = self._hub_push_headers(action)
        return push(action.image, target=action.to, url=url, size_bytes=action.size_bytes, headers=headers, timeout=CLIENT_TIMEOUT_S)

    def _hub_push_headers(self, action: PushAction) -> dict[str, str]:
        # `docker push` to Hub: a token from auth.docker.io with the user's password.
        auth = (action.login, self.lab.users[action.login]) if action.login else None
        response = requests.get(
            f"{self.lab.auth_url}/token",
            params={"service": "registry.docker.io", "scope": f"repository:{action.image.repository}:pull,push"},
            auth=auth,
            timeout=CLIENT_TIMEOUT_S,
        )
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def _check(self, action: CheckAction, step: Step) -> tuple[dict, list[Verdict]]:
        snap = self._snapshot(settle=True)
        if snap is None:
            raise ChaosError(f"{step.loc}: check needs a mirror to look at")
        verdicts = []
        for repo in action.cached:
            actual = {"in_catalog": repo in snap.catalog, "in_storage": repo in snap.stored_repositories}
            verdicts.append(Verdict(f"cached {repo}", {"in_catalog": True, "in_storage": True}, actual, all(actual.values())))
        for repo in action.not_cached:
            actual = {"in_catalog": repo in snap.catalog, "in_storage": repo in snap.stored_repositories}
            verdicts.append(Verdict(f"not cached {repo}", {"in_catalog": False, "in_storage": False}, actual, not any(actual.values())))
        if action.storage_unchanged_since:
            before = self.snapshots[action.storage_unchanged_since]
            verdicts.append(Verdict(f"storage bytes unchanged since {action.storage_unchanged_since}", before.storage_bytes, snap.storage_bytes, before.storage_bytes == snap.storage_bytes))
        if action.catalog_unchanged_since:
            before = self.snapshots[action.catalog_unchanged_since]
            verdicts.append(Verdict(f"catalog unchanged since {action.catalog_unchanged_since}", list(before.catalog), list(snap.catalog), before.catalog == snap.catalog))
        return {"ok": all(v.ok for v in verdicts), **snap.to_dict()}, verdicts

    def _fault(self, action: FaultAction, step: Step) -> tuple[dict, list[Verdict]]:
        applied = self.control.add(action.spec)
        if action.name not in self.active_faults:
            self.active_faults.append(action.name)
        return {"ok": True, "fault": applied}, [Verdict("fault switched on", action.name, action.name, True)]

    def _clear(self, action: ClearAction, step: Step) -> tuple[dict, list[Verdict]]:
        names = action.names or tuple(self.active_faults)
        if action.names:
            for name in names:
                self.control.remove(name)
        else:
            self.control.reset()
        self.active_faults = [n for n in self.active_faults if n not in names]
        remaining = [f["name"] for f in self.control.list()]
        cleared = not any(n in remaining for n in names)
        return {"ok": cleared, "cleared": list(names)}, [Verdict("faults cleared", list(names), remaining, cleared)]

    # -- plumbing ------------------------------------------------------------

    def _latest_cursor(self) -> int:
        cursor = 0
        for _ in range(1000):  # drain whatever the lab recorded before the run (bounded)
            page = self.control.events(after=cursor, limit=1000)
            if not page.events:
                return page.next
            cursor = page.next
        return cursor

    def _events_since_cursor(self) -> list[dict]:
        events: list[dict] = []
        for _ in range(100):
            page = self.control.events(after=self._cursor, limit=1000)
            events.extend(page.events)
            self._cursor = page.next
            if len(page.events) < 1000:
                break
        return events

    def _snapshot(self, *, settle: bool = False) -> mirror_probe.MirrorSnapshot | None:
        if not self.lab.mirror_url:
            return None
        storage = Path(self.lab.mirror_storage) if self.lab.mirror_storage else None
        return mirror_probe.snapshot(self.lab.mirror_url, storage, settle=settle)

    def _clear_faults(self) -> None:
        """A fault must never outlive its run, whatever ended the run."""
        try:
            self.control.reset()
        except Exception as exc:  # noqa: BLE001 - report, but keep tearing down
            self.progress(f"warning: could not clear faults on {self.lab.control_url}: {exc}")
        self.active_faults = []


def _inputs(step: Step) -> dict:
    action = step.action
    if isinstance(action, PullAction):
        return {"image": str(action.image), "login": action.login}
    if isinstance(action, PushAction):
        return {"image": str(action.image), "to": action.to, "size_bytes": action.size_bytes}
    if isinstance(action, CheckAction):
        return {k: v for k, v in vars(action).items() if v}
    if isinstance(action, FaultAction):
        return {"fault": action.spec}
    if isinstance(action, ClearAction):
        return {"faults": list(action.names) or "all"}
    return {}
