"""What each step kind does, and how its outcome is judged.

Every action runs inside the step's deadline (the runner bounds it from the
outside too) and returns (outcome, verdicts). Pull and push outcomes are
judged later, once the step's upstream events are known.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import requests

from chaos.clients.engines import Engine, make_engine
from chaos.clients.pusher import push
from chaos.errors import ChaosError, UsageError
from chaos.faults.faultset import UnknownFault
from chaos.runner.checks import judge_check
from chaos.runner.deadline import DeadlineExceeded, map_with_deadline
from chaos.runner.expectations import Verdict, attempt_verdicts, evaluate
from chaos.scenario.model import (
    CheckAction,
    ClearAction,
    FaultAction,
    PublishAction,
    PullAction,
    PushAction,
    RestartAction,
    Step,
    WaitAction,
)

if TYPE_CHECKING:
    from chaos.runner.runner import Runner

CLIENT_TIMEOUT_S = 20.0


class StepActions:
    def __init__(self, runner: Runner, *, lab_handle=None, engine: str = "builtin"):
        self.runner = runner
        self.lab = runner.lab
        self.lab_handle = lab_handle
        self.engine = engine

    # -- entry points --------------------------------------------------------

    def run(self, step: Step, deadline: float) -> tuple[dict, list[Verdict]]:
        action = step.action
        if isinstance(action, (PullAction, PushAction, CheckAction)) and step.repeat:
            return self._repeat(step, deadline)
        if isinstance(action, PullAction):
            return self._pull_all(action, step, deadline), []
        if isinstance(action, PushAction):
            return self._push(action).to_dict(), []
        if isinstance(action, CheckAction):
            return self._check(action, step)
        if isinstance(action, WaitAction):
            return self._wait(action, step, deadline)
        if isinstance(action, FaultAction):
            return self._fault(action)
        if isinstance(action, ClearAction):
            return self._clear(action)
        if isinstance(action, RestartAction):
            return self._judged(step, self._restart(action))
        if isinstance(action, PublishAction):
            return self._judged(step, self._publish(action))
        raise AssertionError(f"unhandled step kind {step.kind}")

    def judge(self, step: Step, outcome: dict, events: list[dict]) -> list[Verdict]:
        outcomes = outcome["results"] if "results" in outcome else [outcome]
        verdicts = evaluate(step.expect, outcomes, events, self.runner.digests)
        if "repeats_wanted" in outcome and outcome["repeats_done"] < outcome["repeats_wanted"]:
            verdicts.append(Verdict("repeats", outcome["repeats_wanted"], outcome["repeats_done"], False))
        return verdicts

    def inputs(self, step: Step) -> dict:
        action = step.action
        out: dict = {}
        if isinstance(action, PullAction):
            out = {"images": [str(i) for i in action.images], "login": action.login,
                   "concurrency": action.concurrency, "engine": action.engine or self.engine}
        elif isinstance(action, PushAction):
            out = {"image": str(action.image), "to": action.to, "size_bytes": action.size_bytes, "login": action.login}
        elif isinstance(action, CheckAction):
            out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(action).items() if v}
            out["tap_counts"] = {k: str(c) for k, c in action.tap_counts} if action.tap_counts else None
        elif isinstance(action, FaultAction):
            out = {"fault": action.spec}
        elif isinstance(action, ClearAction):
            out = {"faults": list(action.names) or "all"}
        elif isinstance(action, WaitAction):
            out = {"seconds": action.seconds, "until": bool(action.until), "interval_s": action.interval_s}
        elif isinstance(action, RestartAction):
            out = {"component": action.component}
        elif isinstance(action, PublishAction):
            out = {"image": str(action.image.ref), "size_bytes": action.image.size_bytes, "seed": action.content_seed}
        if step.repeat:
            out["repeat"] = vars(step.repeat)
        out["timeout_s"] = step.timeout_s
        return {k: v for k, v in out.items() if v is not None}

    # -- repeat --------------------------------------------------------------

    def _repeat(self, step: Step, deadline: float) -> tuple[dict, list[Verdict]]:
        repeat = step.repeat
        stop_at = time.monotonic() + repeat.duration_s if repeat.duration_s else deadline
        wanted = repeat.times
        attempts: list[dict] = []
        check_verdicts: list[list[Verdict]] = []
        cancelled = self.runner.cancelled
        while (wanted is None or len(attempts) < wanted) and time.monotonic() < min(stop_at, deadline - 0.5) and not cancelled.is_set():
            if attempts and repeat.interval_s:
                cancelled.wait(min(repeat.interval_s, max(0.0, deadline - time.monotonic() - 0.5)))
            action = step.action
            if isinstance(action, PullAction):
                attempts.extend(self._pull_all(action, step, deadline).get("results") or [])
            elif isinstance(action, PushAction):
                attempts.append(self._push(action).to_dict())
            else:
                outcome, verdicts = self._check(action, step)
                attempts.append(outcome)
                check_verdicts.append(verdicts)
        outcome = {"ok": bool(attempts) and all(a.get("ok") for a in attempts), "results": attempts,
                   "repeats_done": len(attempts)}
        if wanted is not None:
            outcome["repeats_wanted"] = wanted * (len(step.action.images) if isinstance(step.action, PullAction) else 1)
        if not isinstance(step.action, CheckAction):
            return outcome, []
        # Repeated checks: each pass/fail is an attempt for success_rate.
        verdicts = evaluate(step.expect, attempts, [], self.runner.digests)
        if outcome.get("repeats_wanted", 0) > len(attempts):
            verdicts.append(Verdict("repeats", outcome["repeats_wanted"], len(attempts), False))
        return outcome, verdicts

    # -- pull and push -------------------------------------------------------

    def _engine(self, action: PullAction, step: Step, deadline: float) -> Engine:
        name = action.engine or self.engine
        credentials = (action.login, self.lab.users[action.login]) if action.login else None
        if name == "builtin":
            # Its timeout bounds each connect and read, and a blob is tried up
            # to 3 times (as dockerd does): keep them all inside the step deadline.
            timeout = min(CLIENT_TIMEOUT_S, step.timeout_s / 4)
        else:
            # A real engine's timeout bounds the whole pull: what is left of the step.
            timeout = max(1.0, deadline - time.monotonic() - 0.5)
        return make_engine(name, lab=self.lab, credentials=credentials, timeout=timeout, progress=self.runner.progress)

    def _pull_all(self, action: PullAction, step: Step, deadline: float) -> dict:
        def pull_one(image):
            engine = self._engine(action, step, deadline)
            try:
                return engine.pull(image).to_dict()
            finally:
                engine.close()

        if len(action.images) == 1 and not step.repeat:
            return pull_one(action.images[0])
        try:
            results = map_with_deadline(pull_one, action.images, action.concurrency, max(0.1, deadline - time.monotonic()))
        except DeadlineExceeded as exc:
            return {"ok": False, "error_code": "TIMEOUT", "message": f"pulls did not finish before the step deadline: {exc}", "results": []}
        return {"ok": all(r["ok"] for r in results), "results": results}

    def _push(self, action: PushAction):
        headers = None
        if action.to == "mirror":
            url = self.lab.mirror_url
        elif action.to == "push-registry":
            if not self.lab.push_registry_url:
                raise UsageError("push to push-registry: the lab has no push registry (set lab.push_registry: true)")
            url = self.lab.push_registry_url
        else:
            url = self.lab.hub_url
            headers = self._hub_push_headers(action)
        return push(action.image, target=action.to, url=url, size_bytes=action.size_bytes, headers=headers, timeout=CLIENT_TIMEOUT_S)

    def _hub_push_headers(self, action: PushAction) -> dict[str, str]:
        # `docker push` to Hub: a token from auth.docker.io with the user's password.
        session = requests.Session()
        session.trust_env = False
        try:
            response = session.get(
                f"{self.lab.auth_url}/token",
                params={"service": "registry.docker.io", "scope": f"repository:{action.image.repository}:pull,push"},
                auth=(action.login, self.lab.users[action.login]),
                timeout=CLIENT_TIMEOUT_S,
            )
        finally:
            session.close()
        if not response.ok:
            raise ChaosError(f"push to hub: the token service answered {response.status_code}: {response.text[:200]}")
        return {"Authorization": f"Bearer {response.json()['token']}"}

    # -- mirror checks and waits ----------------------------------------------

    def _check(self, action: CheckAction, step: Step) -> tuple[dict, list[Verdict]]:
        started = time.monotonic()
        snap = self.runner.snapshot(settle=True)
        if snap is None:
            raise UsageError(f"{step.loc}: check needs a mirror to look at")
        verdicts = judge_check(action, snap, self.runner.snapshots, self.runner.events_since)
        outcome = {"ok": all(v.ok for v in verdicts), "seconds": time.monotonic() - started, **snap.to_dict()}
        if step.expect.within_s is not None:
            verdicts += [v for v in attempt_verdicts(step.expect, outcome, [], {}) if v.what == "within"]
        return outcome, verdicts

    def _wait(self, action: WaitAction, step: Step, deadline: float) -> tuple[dict, list[Verdict]]:
        started = time.monotonic()
        if action.until is None:
            self.runner.cancelled.wait(max(0.0, min(action.seconds, deadline - started - 0.5)))
            waited = time.monotonic() - started
            return {"ok": True, "seconds": waited}, [Verdict("waited", f"{action.seconds:g}s", f"{waited:.2f}s", waited >= action.seconds - 0.05)]
        polls = 0
        while True:
            polls += 1
            outcome, verdicts = self._check(action.until, step)
            if outcome["ok"] or time.monotonic() + action.interval_s > deadline - 0.5 or self.runner.cancelled.is_set():
                break
            self.runner.cancelled.wait(action.interval_s)
        waited = time.monotonic() - started
        verdict = Verdict("until holds", True, {"held": outcome["ok"], "polls": polls, "seconds": round(waited, 2),
                                                "failing": [v.what for v in verdicts if not v.ok]}, outcome["ok"])
        return {**outcome, "seconds": waited, "polls": polls}, [verdict]

    # -- faults --------------------------------------------------------------

    def _fault(self, action: FaultAction) -> tuple[dict, list[Verdict]]:
        applied = self.runner.control.add(action.spec)
        if action.name not in self.runner.active_faults:
            self.runner.active_faults.append(action.name)
        return {"ok": True, "fault": applied}, [Verdict("fault switched on", action.name, applied.get("name"), applied.get("name") == action.name)]

    def _clear(self, action: ClearAction) -> tuple[dict, list[Verdict]]:
        names = action.names or tuple(self.runner.active_faults)
        already_off = []
        if action.names:
            for name in names:
                try:
                    self.runner.control.remove(name)
                except UnknownFault:
                    # Expired, or cleared before the rollback: the goal (not active) holds.
                    already_off.append(name)
        else:
            self.runner.control.reset()
        self.runner.active_faults = [n for n in self.runner.active_faults if n not in names]
        remaining = [f["name"] for f in self.runner.control.list()]
        cleared = not any(n in remaining for n in names) and (bool(action.names) or not remaining)
        outcome = {"ok": cleared, "cleared": list(names), "already_off": already_off}
        return outcome, [Verdict("faults cleared", list(names), {"still_active": remaining}, cleared)]

    # -- the lab itself --------------------------------------------------------

    def _restart(self, action: RestartAction) -> dict:
        started = time.monotonic()
        if self.lab_handle is None:
            raise UsageError("restart needs the embedded lab")
        try:
            self.lab_handle.restart(action.component)
        except ChaosError as exc:
            outcome = {"ok": False, "error_code": "COMPONENT_FAILED", "message": str(exc), "seconds": time.monotonic() - started}
        else:
            outcome = {"ok": True, "component": action.component, "seconds": time.monotonic() - started}
        if action.component == "proxy":
            # A new proxy has a new, empty tap and no faults.
            self.runner.proxy_restarted()
        return outcome

    def _publish(self, action: PublishAction) -> dict:
        started = time.monotonic()
        if self.lab_handle is None:
            raise UsageError("publish needs the embedded lab")
        digest = self.lab_handle.publish(action.image, action.content_seed)
        return {"ok": True, "image": str(action.image.ref), "digest": digest, "seconds": time.monotonic() - started}

    def _judged(self, step: Step, outcome: dict) -> tuple[dict, list[Verdict]]:
        return outcome, attempt_verdicts(step.expect, outcome, [], self.runner.digests)
