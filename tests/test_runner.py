"""The runner's own logic, held directly: the end-of-step quiet wait, which
step an upstream event belongs to, snapshots that settle, tap cursors,
digests between steps, fault windows, deadlines, the rollback and the
journal. Fakes stand in for the fault proxy, the mirror probe and the
engines; each behaves exactly as the real one does on the point tested
(the control API's event pages and in-flight count, the probe's settle
flag, an engine's PullResult)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chaos.clients.mirror_probe import MirrorSnapshot
from chaos.faults.faultset import UnknownFault
from chaos.journal import Journal
from chaos.lab.layout import LabState
from chaos.proxy.tap import Page
from chaos.report.console import header, render, step_line, summary_line
from chaos.runner.environment import RunEnvironment
from chaos.runner.runner import Runner
from chaos.scenario.loader import load_scenario_text
from chaos.vocab.results import PullResult, PushResult

pytestmark = pytest.mark.timeout(60)

LAB = """\
lab:
  users: [{name: alice, password: wonderland}]
  images: [alpine:3.19, nginx:1.25]
"""


class FakeControl:
    """The control API: faults by name, the tap's events with ids from 1, and
    how many requests are in flight (what /healthz says)."""

    def __init__(self):
        self.faults: dict[str, dict] = {}
        self.tap: list[dict] = []
        self.in_flight = 0
        self.held: list[dict] = []  # what GET /inflight describes
        self.resets = 0
        self.on_health = lambda: None  # a hook: lets a test finish a request while the runner waits

    def emit(self, **event) -> None:
        self.tap.append({"id": len(self.tap) + 1, "kind": "other", "status": 200, "bytes": 0, **event})

    def add(self, spec):
        self.faults[spec["name"]] = {**spec, "expires_at": time.time() + 300}
        return self.faults[spec["name"]]

    def remove(self, name):
        if name not in self.faults:
            raise UnknownFault(f"no fault named {name!r}")
        del self.faults[name]

    def reset(self):
        self.resets += 1
        removed, self.faults = len(self.faults), {}
        return removed

    def list(self):
        return list(self.faults.values())

    def events(self, after=0, limit=1000):
        page = [e for e in self.tap if e["id"] > after][:limit]
        return Page(page, page[-1]["id"] if page else after, 0)

    def health(self):
        self.on_health()
        return {"ok": True, "in_flight": self.in_flight}

    def in_flight_requests(self):
        return list(self.held)


@dataclass
class FakeProbe:
    storage_bytes: int = 1000
    settle_calls: list[bool] = field(default_factory=list)

    def snapshot(self, *, settle=False):
        self.settle_calls.append(settle)
        return MirrorSnapshot(catalog=("library/alpine",), stored_repositories=("library/alpine",), storage_bytes=self.storage_bytes)

    def live_uploads(self):
        return 0


class FakeEngine:
    def __init__(self, result: PullResult, before_return=lambda: None, seconds=0.0):
        self.result, self.before_return, self.seconds = result, before_return, seconds

    def pull(self, ref):
        if self.seconds:
            time.sleep(self.seconds)
        self.before_return()
        return self.result

    def close(self):
        pass


def ok_pull(digest="sha256:" + "a" * 64, served_by="mirror"):
    return PullResult(image="docker.io/library/alpine:3.19", ok=True, served_by=served_by, digest=digest, seconds=0.01)


def make_runner(tmp_path: Path, steps_yaml: str, *, engine_for=None, probe=None, control=None, extra=""):
    scenario = load_scenario_text(f"name: t\n{LAB}{extra}steps:\n{steps_yaml}", "t.yaml")
    control = control or FakeControl()
    probe = probe or FakeProbe()
    engines_asked = []

    def engines(name, credentials, timeout, mirror_only):
        engines_asked.append((name, credentials, timeout))
        return engine_for(name) if engine_for else FakeEngine(ok_pull())

    def pusher(engine, image, to, size_bytes, credentials, timeout):
        return PushResult(image=str(image), target=to, ok=to != "mirror", error_code=None if to != "mirror" else "UNSUPPORTED", status=405)

    state = LabState(root=str(tmp_path), mirror_url="http://127.0.0.1:1", control_url="http://127.0.0.1:2",
                     users={"alice": "wonderland"})
    env = RunEnvironment(state=state, control=control, engines=engines, probe=probe, pusher=pusher)
    runner = Runner(scenario, env, tmp_path)
    runner.engines_asked = engines_asked
    return runner, control, probe


def records(journal: Journal) -> dict:
    return {record.name: record for record in journal.steps}


def test_an_upstream_request_finishing_after_the_client_belongs_to_its_own_step(tmp_path):
    # The mirror keeps fetching after the client has its answer: the event
    # reaches the tap only once that request ends. The step must wait for it.
    control = FakeControl()
    polls = []

    def request_still_running():
        polls.append(1)
        if len(polls) == 3:
            control.in_flight = 0
            control.emit(kind="blob", status=200, bytes=4096, repository="library/alpine")

    def late_request():
        control.in_flight = 1
        control.on_health = request_still_running

    runner, _, _ = make_runner(tmp_path, """\
  - {name: first, pull: alpine:3.19}
  - {name: second, pull: alpine:3.19}
""", engine_for=lambda name: FakeEngine(ok_pull(), before_return=late_request) if not polls else FakeEngine(ok_pull()), control=control)
    steps = records(runner.run())
    assert [e["bytes"] for e in steps["first"].events] == [4096]
    assert steps["second"].events == []
    assert len(polls) >= 3


def test_a_request_that_never_ends_does_not_hold_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr("chaos.runner.quiet.QUIET_DEADLINE_S", 0.3)
    control = FakeControl()
    control.in_flight = 1  # a blackholed request, for ever
    runner, _, _ = make_runner(tmp_path, "  - {name: only, pull: alpine:3.19}\n", control=control)
    started = time.monotonic()
    assert runner.run().status == "completed"
    assert time.monotonic() - started < 5


def test_a_request_held_open_past_the_step_is_named_in_its_record_and_diagnosis(tmp_path, monkeypatch):
    # A blackhole keeps the mirror's manifest request open: the tap never gets
    # its event before the step ends, so /inflight is the only witness.
    monkeypatch.setattr("chaos.runner.quiet.QUIET_DEADLINE_S", 0.3)
    control = FakeControl()
    control.in_flight = 2
    step_started = []

    def hold_requests():
        now = time.time()
        control.held = [
            # Started before this step (an earlier step's): not this step's.
            {"ts": step_started[0] - 5, "held_s": 5.0, "origin": "mirror", "method": "GET", "kind": "blob",
             "repository": "library/nginx", "faults": ["older"]},
            {"ts": now, "held_s": 0.5, "origin": "mirror", "method": "HEAD", "kind": "manifest",
             "repository": "library/alpine", "faults": ["registry-hole"]},
        ]

    def engine_for(name):
        step_started.append(time.time())
        return FakeEngine(PullResult(image="docker.io/library/alpine:3.19", ok=False, error_code="TIMEOUT",
                                     message="no answer within 0.5s", seconds=0.5), before_return=hold_requests)

    runner, _, _ = make_runner(tmp_path, """\
  - {name: hole, fault: {name: registry-hole, kind: blackhole, match: {roles: [registry]}}}
  - {name: stuck, pull: alpine:3.19, timeout: 2s, expect: {error: TIMEOUT}}
""", engine_for=engine_for, control=control)
    steps = records(runner.run())
    held = steps["stuck"].held
    assert [(h["kind"], h["repository"]) for h in held] == [("manifest", "library/alpine")]
    summary = steps["stuck"].diagnosis["summary"]
    assert summary == ("the mirror's HEAD manifest library/alpine was held open by fault registry-hole (blackhole) "
                       "for the whole step, so the pull timed out"), summary


def test_snapshots_settle_for_checks_and_for_the_steps_they_compare_with(tmp_path):
    runner, _, probe = make_runner(tmp_path, """\
  - {name: warm, pull: alpine:3.19}
  - {name: other, pull: alpine:3.19}
  - {name: look, check: {storage_unchanged_since: warm}}
""")
    journal = runner.run()
    assert journal.status == "completed"
    # One snapshot after each step; the check takes one more of its own while it runs.
    assert probe.settle_calls == [True, False, True, True]


def test_tap_counts_since_a_step_include_every_later_step(tmp_path):
    control = FakeControl()
    control.emit(kind="manifest")  # before the run: not the run's own
    pulls = []

    def upstream_manifest():
        pulls.append(1)
        control.emit(kind="manifest", repository="library/alpine")

    runner, _, _ = make_runner(tmp_path, """\
  - {name: a, pull: alpine:3.19}
  - {name: b, pull: alpine:3.19}
  - {name: since-b, check: {tap: {since: b, counts: {manifest: 1}}}}
  - {name: since-start, check: {tap: {counts: {manifest: 2}}}}
""", engine_for=lambda name: FakeEngine(ok_pull(), before_return=upstream_manifest), control=control)
    steps = records(runner.run())
    assert steps["since-b"].passed, steps["since-b"].verdicts
    assert steps["since-start"].passed, steps["since-start"].verdicts
    assert len(steps["a"].events) == 1 and len(steps["b"].events) == 1


def test_same_digest_as_compares_with_the_named_steps_digest(tmp_path):
    digests = iter(["sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "1" * 64])
    runner, _, _ = make_runner(tmp_path, """\
  - {name: warm, pull: alpine:3.19}
  - {name: moved, pull: alpine:3.19, expect: {same_digest_as: warm}}
  - {name: back, pull: alpine:3.19, expect: {same_digest_as: warm}}
""", engine_for=lambda name: FakeEngine(ok_pull(next(digests))))
    steps = records(runner.run())
    assert not steps["moved"].passed and steps["back"].passed
    failed = steps["moved"].failed_verdicts[0]
    assert failed.expected == "sha256:" + "1" * 64 and failed.actual == "sha256:" + "2" * 64


def test_fault_windows_and_the_faults_active_for_each_step(tmp_path):
    runner, control, _ = make_runner(tmp_path, """\
  - {name: down, fault: {name: hub-down, kind: refuse}}
  - {name: during, pull: alpine:3.19}
  - {name: up, clear: hub-down}
  - {name: after, pull: alpine:3.19}
""")
    journal = runner.run()
    steps = records(journal)
    assert steps["during"].faults_active == ["hub-down"] and steps["after"].faults_active == []
    (window,) = journal.fault_windows
    assert (window.name, window.kind, window.on_step, window.off_step) == ("hub-down", "refuse", "down", "up")
    assert window.on <= window.off
    assert control.faults == {} and control.resets >= 1  # and cleared for good at the end


def test_a_fault_still_on_at_the_end_is_closed_by_the_run_and_reset(tmp_path):
    runner, control, _ = make_runner(tmp_path, "  - {name: down, fault: {name: hub-down, kind: refuse}}\n")
    journal = runner.run()
    (window,) = journal.fault_windows
    assert window.off is not None and window.off_step is None
    assert control.faults == {}


def test_a_step_past_its_deadline_fails_and_the_run_goes_on_to_its_rollback(tmp_path):
    runner, control, _ = make_runner(tmp_path, """\
  - {name: stuck, pull: alpine:3.19, timeout: 0.5s}
  - {name: stuck-expected, pull: alpine:3.19, timeout: 0.5s, expect: {error: TIMEOUT}}
  - {name: next, fault: {name: hub-down, kind: refuse}}
""", engine_for=lambda name: FakeEngine(ok_pull(), seconds=3.0), extra="rollback:\n  - {name: undo, clear: all}\n")
    started = time.monotonic()
    journal = runner.run()
    steps = records(journal)
    assert time.monotonic() - started < 6  # two 0.5 s deadlines (+1 s grace each), not two 3 s pulls
    assert steps["stuck"].outcome["error_code"] == "TIMEOUT" and not steps["stuck"].passed
    # A pull expected to time out is judged on what happened: it did.
    assert steps["stuck-expected"].passed
    assert steps["undo"].phase == "rollback" and steps["undo"].passed
    assert journal.status == "failed"


def test_a_step_that_cannot_act_fails_with_the_reason_and_the_run_goes_on(tmp_path):
    class Refusing(FakeControl):
        def add(self, spec):
            from chaos.errors import UsageError

            raise UsageError("params.delay_ms: required by kind 'latency'")

    runner, _, _ = make_runner(tmp_path, """\
  - {name: bad, fault: {name: slow, kind: refuse}}
  - {name: still-runs, pull: alpine:3.19}
""", control=Refusing())
    steps = records(runner.run())
    assert steps["bad"].outcome["error_code"] == "STEP_ERROR" and "delay_ms" in steps["bad"].error
    assert steps["still-runs"].passed


def test_logins_reach_the_engine_with_the_lab_users_password(tmp_path):
    runner, _, _ = make_runner(tmp_path, "  - {name: private, pull: alice/app:1, login: alice, engine: skopeo}\n")
    runner.run()
    (name, credentials, timeout), = runner.engines_asked
    assert (name, credentials) == ("skopeo", ("alice", "wonderland"))
    assert 1.0 <= timeout <= 120


def test_ctrl_c_stops_the_run_clears_faults_and_marks_the_journal(tmp_path):
    class Interrupting(FakeEngine):
        def pull(self, ref):
            raise KeyboardInterrupt

    runner, control, _ = make_runner(tmp_path, """\
  - {name: down, fault: {name: hub-down, kind: refuse}}
  - {name: interrupted, pull: alpine:3.19}
  - {name: never, pull: alpine:3.19}
""", engine_for=lambda name: Interrupting(ok_pull()))
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    journal = Journal.load(tmp_path / "journal.json")
    assert journal.status == "interrupted"
    assert "never" not in records(journal)
    assert control.faults == {}


def test_the_journal_alone_renders_the_report_the_run_printed(tmp_path):
    printed = []
    runner, _, _ = make_runner(tmp_path, """\
  - {name: warm, pull: alpine:3.19}
  - {name: push-refused, push: {image: alice/x:1, to: mirror}, expect: {error: UNSUPPORTED}}
  - {name: wrong, pull: alpine:3.19, expect: {served_by: hub}}
""", extra="steady_state:\n  - {name: healthy, pull: alpine:3.19}\n")
    width = max(len(s.name) for s in runner.journal.plan)
    runner.on_step_end = lambda record: printed.append(step_line(record, runner.total_steps, width))
    printed.append(header(runner.journal))
    journal = runner.run()
    printed.append(summary_line(journal))
    # A copy of journal.json in an empty folder is enough.
    lone = tmp_path / "elsewhere" / "journal.json"
    lone.parent.mkdir()
    lone.write_text((tmp_path / "journal.json").read_text())
    assert render(Journal.load(lone)) == "\n".join(printed)
    assert "5 steps" in printed[0]  # the steady state counts twice, before and after
    assert journal.status == "failed" and "FAIL  wrong" in render(journal)


def test_the_journal_records_descriptions_expectations_and_outcomes(tmp_path):
    runner, _, _ = make_runner(tmp_path, "  - {name: warm, pull: alpine:3.19, expect: {served_by: mirror, within: 2s}}\n")
    journal = Journal.load(Path(runner.run() and tmp_path / "journal.json"))
    (warm,) = journal.steps
    assert warm.description == "pull alpine:3.19"
    assert warm.expect == ["served_by: mirror", "within: 2s"]
    assert warm.outcome["summary"] == "ok via mirror"
    assert warm.outcome["results"][0]["served_by"] == "mirror"
    assert warm.inputs["images"] == ["docker.io/library/alpine:3.19"] and warm.inputs["timeout_s"] == 120
    assert journal.plan[0].description == "pull alpine:3.19"
    assert journal.lab["mirror_url"] == "http://127.0.0.1:1" and "users" not in journal.lab


def test_the_proxy_restarting_starts_the_tap_again(tmp_path):
    class Lab:
        def __init__(self, control):
            self.control = control

        def restart(self, component):
            self.control.tap.clear()  # a new proxy: a new, empty tap

        def publish(self, image, seed):
            raise AssertionError("not asked")

        def problems(self):
            return {}

    control = FakeControl()
    control.emit(kind="manifest")
    runner, _, _ = make_runner(tmp_path, """\
  - {name: before, pull: alpine:3.19}
  - {name: new-proxy, restart: proxy}
  - {name: counted, check: {tap: {since: before, counts: {requests: 0}}}}
""", control=control)
    runner.env.lab = Lab(control)
    steps = records(runner.run())
    assert steps["new-proxy"].passed and steps["counted"].passed, steps["counted"].verdicts


def test_steps_run_on_a_worker_thread_unless_their_kind_starts_processes(tmp_path):
    seen = []

    class Lab:
        def restart(self, component):
            seen.append(("restart", threading.current_thread() is threading.main_thread()))

        def publish(self, image, seed):
            seen.append(("publish", threading.current_thread() is threading.main_thread()))
            return "sha256:" + "f" * 64

        def problems(self):
            return {"mirror": "exited with code 2: panic: upstream refused"} if seen else {}

    runner, _, _ = make_runner(tmp_path, """\
  - {name: r, restart: mirror}
  - {name: p, publish: {image: alpine:3.20}}
""")
    runner.env.lab = Lab()
    journal = runner.run()
    assert journal.status == "completed"
    assert seen == [("restart", True), ("publish", False)]
    # What is down after each step is recorded with it.
    assert records(journal)["p"].components_down == {"mirror": "exited with code 2: panic: upstream refused"}
    assert records(journal)["p"].outcome["results"][0]["digest"] == "sha256:" + "f" * 64


def test_a_request_held_open_across_steps_belongs_to_the_step_that_started_it(tmp_path):
    control = FakeControl()
    started = {}

    def engine_for(name):
        if "held" not in started:
            started["held"] = time.time()  # the mirror's request starts in step one ...
            return FakeEngine(ok_pull())
        # ... and reaches the tap (it ended) only during step two.
        return FakeEngine(ok_pull(), before_return=lambda: control.emit(kind="manifest", ts=started["held"], status=None, fault="hole"))

    runner, _, _ = make_runner(tmp_path, """\
  - {name: one, pull: alpine:3.19}
  - {name: two, pull: alpine:3.19, expect: {upstream: {manifest: 0}}}
""", engine_for=engine_for, control=control)
    steps = records(runner.run())
    assert steps["two"].events == [] and steps["two"].passed
    (late,) = steps["one"].events
    assert late["late"] is True and late["fault"] == "hole"
    assert Journal.load(tmp_path / "journal.json").steps[0].events[0]["late"] is True


def test_private_content_in_the_mirror_is_a_finding_whatever_the_scenario_asked(tmp_path):
    class CachingProbe(FakeProbe):
        def snapshot(self, *, settle=False):
            return MirrorSnapshot(catalog=("alice/secret-app", "library/alpine"), stored_repositories=("library/alpine",),
                                  storage_bytes=1)

    scenario_lab = "lab:\n  users: [{name: alice, password: wonderland}]\n  images: [alpine:3.19, {ref: 'alice/secret-app:1', private: true}]\n"
    scenario = load_scenario_text(f"name: t\n{scenario_lab}steps:\n  - {{name: warm, pull: alpine:3.19}}\n", "t.yaml")
    control = FakeControl()
    state = LabState(root=str(tmp_path), mirror_url="http://127.0.0.1:1", control_url="http://127.0.0.1:2", users={"alice": "wonderland"})
    env = RunEnvironment(state=state, control=control, engines=lambda *a: FakeEngine(ok_pull()), probe=CachingProbe(),
                         pusher=lambda *a: None)
    journal = Runner(scenario, env, tmp_path).run()
    assert journal.status == "completed"  # a finding, not a failure
    (finding,) = journal.findings
    assert finding["repository"] == "alice/secret-app" and finding["where"] == ["catalog"]
    assert "anyone who can reach the mirror can pull it" in summary_line(journal)


def test_a_catalog_that_could_not_be_read_is_a_finding_and_storage_still_speaks(tmp_path):
    class DeafCatalogProbe(FakeProbe):
        def snapshot(self, *, settle=False):
            return MirrorSnapshot(catalog=(), stored_repositories=("alice/secret-app",), storage_bytes=1,
                                  catalog_error="catalog of http://127.0.0.1:1 unavailable: 401 Unauthorized")

    scenario_lab = "lab:\n  users: [{name: alice, password: wonderland}]\n  images: [alpine:3.19, {ref: 'alice/secret-app:1', private: true}]\n"
    scenario = load_scenario_text(f"name: t\n{scenario_lab}steps:\n  - {{name: warm, pull: alpine:3.19}}\n", "t.yaml")
    state = LabState(root=str(tmp_path), mirror_url="http://127.0.0.1:1", control_url="http://127.0.0.1:2", users={"alice": "wonderland"})
    env = RunEnvironment(state=state, control=FakeControl(), engines=lambda *a: FakeEngine(ok_pull()),
                         probe=DeafCatalogProbe(), pusher=lambda *a: None)
    journal = Runner(scenario, env, tmp_path).run()
    unknown, cached = journal.findings
    assert unknown["kind"] == "private-content-unknown" and unknown["says"] == (
        "could not read the mirror's catalog to look for private repositories (alice/secret-app): "
        "catalog of http://127.0.0.1:1 unavailable: 401 Unauthorized; looked in its storage only")
    assert cached["kind"] == "private-content-cached" and cached["where"] == ["storage"]
