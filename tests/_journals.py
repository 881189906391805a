"""Journals made by hand for the report tests: a passing run, and a failed one
with every feature a report shows (fault windows, events by origin, a
diagnosis, a step not run, text that must be escaped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chaos.journal import FaultWindow, Journal, PlannedStep, StepRecord, Verdict

T0 = datetime(2026, 11, 29, 20, 0, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script> *bold* | pipe `tick`"


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def step(index, name, start, end, *, passed=True, kind="pull", description="pull alpine:3.19", phase="steps", **extra):
    return StepRecord(index=index, name=name, phase=phase, kind=kind, loc=f"s.yaml:{10 + index}", description=description,
                      started=at(start), ended=at(end), seconds=end - start, passed=passed, **extra)


def passing_journal() -> Journal:
    journal = Journal(scenario={"name": "hub-down", "path": "scenarios/hub-down.yaml"}, run_dir="runs/a", status="completed",
                      started=at(0), ended=at(3), seconds=3.0)
    journal.steps = [step(0, "warm", 0, 1, outcome={"summary": "ok via mirror"}),
                     step(1, "cached", 1, 3, outcome={"summary": "ok via mirror"})]
    journal.plan = [PlannedStep(s.name, s.phase, s.kind, s.description) for s in journal.steps]
    return journal


def failed_journal() -> Journal:
    journal = Journal(scenario={"name": "rate-limit-masked", "path": "s.yaml", "description": HOSTILE}, engine="skopeo",
                      run_dir="runs/b", status="failed", started=at(0), ended=at(10), seconds=10.0)
    journal.fault_windows = [FaultWindow("hub-limit", "rate-limit", {"name": "hub-limit"}, on=at(1), on_step="limit", off=at(9), off_step="undo")]
    events = [
        {"ts": T0.timestamp() + 2.1, "origin": "mirror", "method": "GET", "kind": "manifest", "host": "registry-1.docker.io",
         "path": "/v2/library/nginx/manifests/1.25", "status": 429, "fault": "hub-limit", "repository": "library/nginx"},
        {"ts": T0.timestamp() + 2.3, "origin": "client", "method": "GET", "kind": "ping", "host": "registry-1.docker.io",
         "path": "/v2/", "status": 401},
        {"ts": T0.timestamp() + 2.5, "origin": "client", "method": "GET", "kind": "manifest", "host": "registry-1.docker.io",
         "path": "/v2/library/nginx/manifests/1.25", "status": None, "fault": None, "error": "killed"},
    ]
    journal.steps = [
        step(0, "limit", 0.5, 1, kind="fault", description="fault hub-limit (rate-limit) on"),
        step(1, "uncached", 2, 4, passed=False, description=f"pull nginx:1.25 {HOSTILE}", events=events,
             outcome={"summary": "TOOMANYREQUESTS", "message": f"toomanyrequests {HOSTILE}", "error_code": "TOOMANYREQUESTS"},
             verdicts=[Verdict("ok", True, False, False), Verdict("served_by", "mirror", None, False)],
             diagnosis={"summary": "Hub's rate limit masked as \"manifest unknown\"",
                        "chain": [{"link": "client", "text": "client: TOOMANYREQUESTS"},
                                  {"link": "mirror", "text": "mirror answered 404 MANIFEST_UNKNOWN"}]}),
        step(2, "undo", 8.9, 9, kind="clear", description="clear hub-limit", phase="rollback"),
    ]
    journal.plan = [PlannedStep(s.name, s.phase, s.kind, s.description) for s in journal.steps]
    journal.plan.append(PlannedStep("never-ran", "steady_state_after", "pull", "pull alpine:3.19"))
    return journal
