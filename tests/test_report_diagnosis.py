"""Cause chains, from journal records alone: the client's result <- what the
mirror answered <- the upstream requests <- the fault."""

from __future__ import annotations

from chaos.journal import StepRecord, Verdict
from chaos.report.diagnosis import Diagnosis, diagnose

KINDS = {"hub-limit": "rate-limit", "hole": "blackhole", "hub-down": "refuse", "hub-500": "http"}


def pull_record(*, ok, served_by=None, code=None, mirror=None, events=(), held=(), passed=None, components_down=None):
    attempts = [mirror] if mirror else []
    if served_by == "hub" or (not ok and mirror is not None):
        attempts.append({"endpoint": "hub", "ok": ok, "status": 200 if ok else None, "error_code": None if ok else code})
    result = {"image": "docker.io/library/nginx:1.25", "ok": ok, "served_by": served_by, "error_code": code, "attempts": attempts}
    return StepRecord(
        index=0, name="s", phase="steps", kind="pull", loc="s.yaml:3", description="pull nginx:1.25",
        outcome={"ok": ok, "results": [result], "error_code": code},
        verdicts=[] if passed else [Verdict("ok", True, ok, ok)], passed=ok if passed is None else passed,
        events=list(events), held=list(held), components_down=dict(components_down or {}),
    )


def test_the_rate_limit_masked_as_manifest_unknown():
    record = pull_record(
        ok=False, code="TIMEOUT",
        mirror={"endpoint": "mirror", "ok": False, "status": 404, "error_code": "MANIFEST_UNKNOWN"},
        events=[
            {"origin": "mirror", "method": "GET", "kind": "manifest", "repository": "library/nginx", "status": 429, "fault": "hub-limit"},
            {"origin": "mirror", "method": "GET", "kind": "ping", "status": 401},
        ],
    )
    found = diagnose(record, KINDS)
    assert "rate limit masked as \"manifest unknown\"" in found.summary
    texts = [link.text for link in found.chain]
    assert texts[0] == "client: TIMEOUT"
    assert texts[1] == "mirror answered 404 MANIFEST_UNKNOWN"
    assert texts[2] == "mirror -> Hub: GET manifest library/nginx: 429 by fault hub-limit (rate-limit)"
    assert len(texts) == 3  # the ping's 401 challenge is not a cause


def test_a_cached_pull_timed_out_behind_a_blackholed_head():
    record = pull_record(
        ok=False, code="TIMEOUT", mirror={"endpoint": "mirror", "ok": False, "status": None, "error_code": "TIMEOUT"},
        held=[{"origin": "mirror", "method": "HEAD", "kind": "manifest", "repository": "library/alpine", "held_s": 30.0, "faults": ["hole"]}],
    )
    found = diagnose(record, KINDS)
    assert found.summary == ("the mirror's HEAD manifest library/alpine was held open by fault hole (blackhole) "
                             "for the whole step, so the pull timed out")
    assert any("still held open when the step ended (30.0s) by fault hole (blackhole)" in link.text for link in found.chain)


def test_the_mirror_process_gone():
    record = pull_record(
        ok=False, code="NETWORK",
        mirror={"endpoint": "mirror", "ok": False, "error_code": "NETWORK", "message": "dial tcp 127.0.0.1:5000: connect: connection refused"},
        components_down={"mirror": "exited with code 2: panic: Get \"https://registry-1.docker.io/v2/\": EOF"},
    )
    found = diagnose(record, KINDS)
    assert found.summary.startswith("the mirror process is not running (exited with code 2: panic:")
    assert found.chain[-1].link == "component"


def test_a_pull_that_fell_back_to_hub_is_explained_even_when_it_passed():
    record = pull_record(ok=True, served_by="hub", passed=True,
                         mirror={"endpoint": "mirror", "ok": False, "status": 404, "error_code": "MANIFEST_UNKNOWN"})
    found = diagnose(record, KINDS)
    assert found.summary == "the mirror could not serve it (mirror answered 404 MANIFEST_UNKNOWN), so the client fell back to Hub"


def test_a_step_that_went_as_it_should_has_no_diagnosis():
    assert diagnose(pull_record(ok=True, served_by="mirror", passed=True, mirror={"endpoint": "mirror", "ok": True}), KINDS) is None


def test_hub_failures_reaching_the_client_through_the_mirror():
    record = pull_record(
        ok=False, code="BAD_RESPONSE", mirror={"endpoint": "mirror", "ok": False, "status": 500, "error_code": "BAD_RESPONSE"},
        events=[{"origin": "mirror", "method": "GET", "kind": "manifest", "status": 503, "fault": "hub-500"}],
    )
    assert diagnose(record, KINDS).summary == "Hub's failure by fault hub-500 (http) reached the client as the mirror's 500"


def test_the_diagnosis_round_trips_and_prints_at_most_three_short_lines():
    record = pull_record(ok=False, code="NETWORK", mirror={"endpoint": "mirror", "ok": False, "status": 404, "error_code": "MANIFEST_UNKNOWN"},
                         events=[{"origin": "client", "method": "GET", "kind": "ping", "status": None, "fault": "hub-down",
                                  "error": "x" * 500}] * 3)
    found = diagnose(record, KINDS)
    again = Diagnosis.from_dict(found.to_dict())
    assert again == found
    lines = again.lines()
    assert 1 <= len(lines) <= 3 and all(len(line) <= 240 for line in lines)
    assert "x3" in lines[-1] or "x3" in found.chain[-1].text


def test_hub_unreachable_for_the_mirror_and_the_client():
    record = pull_record(
        ok=False, code="NETWORK", mirror={"endpoint": "mirror", "ok": False, "status": 404, "error_code": "MANIFEST_UNKNOWN"},
        events=[{"origin": "mirror", "method": "CONNECT", "kind": "connect", "host": "registry-1.docker.io", "status": 502, "fault": "hub-down"},
                {"origin": "client", "method": "CONNECT", "kind": "connect", "host": "registry-1.docker.io", "status": 502, "fault": "hub-down"}],
    )
    found = diagnose(record, KINDS)
    assert found.summary == ("the mirror could not reach Hub, blocked by fault hub-down (refuse), and answered 404 "
                             "MANIFEST_UNKNOWN; the client's own fallback to Hub failed too (NETWORK)")
    assert "client -> Hub: CONNECT registry-1.docker.io: 502 by fault hub-down (refuse)" in [link.text for link in found.chain]


def test_a_mirror_answer_that_broke_mid_transfer_is_not_called_an_answer_with_an_error():
    record = pull_record(
        ok=False, code="NETWORK", mirror={"endpoint": "mirror", "ok": False, "status": 200, "error_code": "NETWORK"},
        events=[{"origin": "mirror", "method": "GET", "kind": "blob", "status": None, "fault": "cdn-reset", "error": "Connection killed."}],
    )
    found = diagnose(record, {"cdn-reset": "reset"})
    assert found.summary == ("the mirror's download from Hub was cut by fault cdn-reset (reset): it answered 200, then the "
                             "transfer broke (NETWORK); the client's own fallback to Hub failed too (NETWORK)")
    assert "mirror answered 200, then the transfer broke (NETWORK)" in [link.text for link in found.chain]


def test_a_mirror_without_credentials_for_a_private_repository():
    record = pull_record(
        ok=False, code="DENIED", mirror={"endpoint": "mirror", "ok": False, "status": 404, "error_code": "MANIFEST_UNKNOWN"},
        events=[{"origin": "mirror", "method": "GET", "kind": "manifest", "repository": "alice/app", "status": 401}],
    )
    assert diagnose(record, KINDS).summary.startswith("Hub refused the mirror (401: its requests carry no credentials")
