"""Verdicts from a step's outcome: each asked-for expectation judged against
what actually happened, with the actual value kept."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from chaos.clients.mirror_probe import MirrorSnapshot
from chaos.language.model import Comparison, Counts, Expectation, MirrorAnswer
from chaos.steps.kinds.check import CheckAction, judge_check
from chaos.steps.outcome import ActionResult, Outcome
from chaos.steps.verdicts import Evidence, expectation_texts, judge_results, upstream_counts
from chaos.vocab.results import PullResult

OK_FROM_MIRROR = PullResult(image="docker.io/library/alpine:3.19", ok=True, served_by="mirror", digest="sha256:aa")
DENIED = PullResult(image="docker.io/alice/app:1", ok=False, error_code="UNAUTHORIZED",
                    message="pull access denied for alice/app, repository does not exist or may require 'docker login'")
BLOB_FROM_UPSTREAM = {"kind": "blob", "status": 200, "bytes": 1234}
TOKEN = {"kind": "token", "status": 200, "bytes": 50}


def verdicts(expect, outcome, events=(), digests=None):
    results = outcome if isinstance(outcome, list) else [outcome]
    judged = judge_results(expect, Outcome.of("pull", results), Evidence(events=list(events), digests=digests or {}))
    return {v.what: v for v in judged}


def test_no_expectation_means_the_step_must_succeed():
    assert verdicts(Expectation(), OK_FROM_MIRROR)["ok"].ok
    assert not verdicts(Expectation(), DENIED)["ok"].ok


def test_asking_for_an_error_implies_failure():
    result = verdicts(Expectation(error=("UNAUTHORIZED", "DENIED")), DENIED)
    assert result["ok"].ok and result["ok"].expected is False
    assert result["error"].ok and result["error"].actual == "UNAUTHORIZED"


@pytest.mark.parametrize("codes,passes", [(("DENIED",), False), (("UNAUTHORIZED",), True), (("NETWORK", "UNAUTHORIZED"), True)])
def test_error_code_among_a_set(codes, passes):
    assert verdicts(Expectation(error=codes), DENIED)["error"].ok is passes


def test_message_is_a_regular_expression_search():
    assert verdicts(Expectation(message=re.compile("may require 'docker login'")), DENIED)["message"].ok
    assert not verdicts(Expectation(message=re.compile("^denied$")), DENIED)["message"].ok


def test_served_by():
    assert verdicts(Expectation(served_by="mirror"), OK_FROM_MIRROR)["served_by"].ok
    assert not verdicts(Expectation(served_by="hub"), OK_FROM_MIRROR)["served_by"].ok


def test_from_cache_needs_the_mirror_and_no_upstream_blob_bytes():
    assert verdicts(Expectation(from_cache=True), OK_FROM_MIRROR, [TOKEN])["from_cache"].ok
    failed = verdicts(Expectation(from_cache=True), OK_FROM_MIRROR, [BLOB_FROM_UPSTREAM])["from_cache"]
    assert not failed.ok and failed.actual["upstream_blob_bytes"] == 1234
    assert not verdicts(Expectation(from_cache=True), replace(OK_FROM_MIRROR, served_by="hub"))["from_cache"].ok


def test_same_digest_as_an_earlier_step():
    expect = Expectation(same_digest_as="warm")
    assert verdicts(expect, OK_FROM_MIRROR, digests={"warm": "sha256:aa"})["same_digest_as warm"].ok
    assert not verdicts(expect, OK_FROM_MIRROR, digests={"warm": "sha256:bb"})["same_digest_as warm"].ok
    # An earlier step that failed has no digest: never equal.
    assert not verdicts(expect, replace(OK_FROM_MIRROR, digest=None), digests={"warm": None})["same_digest_as warm"].ok


def test_upstream_counts_by_kind():
    events = [TOKEN, TOKEN, BLOB_FROM_UPSTREAM, {"kind": "blob", "status": 404, "bytes": 99}]
    assert upstream_counts(events) == {"requests": 4, "blob_bytes": 1234, "token": 2, "blob": 2}
    wanted = (Counts((("token", Comparison("==", 2)), ("manifest", Comparison("==", 0)), ("blob_bytes", Comparison("==", 0)))),)
    result = verdicts(Expectation(upstream=wanted), OK_FROM_MIRROR, events)
    assert result["upstream.token"].ok and result["upstream.manifest"].ok
    assert not result["upstream.blob_bytes"].ok and result["upstream.blob_bytes"].actual == 1234


def test_every_attempt_must_hold_without_a_success_rate():
    result = verdicts(Expectation(served_by="mirror"), [OK_FROM_MIRROR, replace(OK_FROM_MIRROR, served_by="hub")])
    assert not result["served_by"].ok
    assert result["served_by"].actual == ["mirror", "hub"]


def test_success_rate_counts_attempts_meeting_every_expectation():
    attempts = [OK_FROM_MIRROR] * 9 + [DENIED]
    assert verdicts(Expectation(success_rate=Comparison(">=", 0.9)), attempts)["success_rate"].ok
    failed = verdicts(Expectation(success_rate=Comparison(">=", 0.95)), attempts)["success_rate"]
    assert not failed.ok and failed.actual == 0.9
    # served_by is part of what a success means.
    assert verdicts(Expectation(served_by="hub", success_rate=Comparison(">=", 0.1)), attempts)["success_rate"].actual == 0.0


def test_within_is_a_time_budget_per_attempt():
    assert verdicts(Expectation(within_s=1.0), replace(OK_FROM_MIRROR, seconds=0.4))["within"].ok
    slow = verdicts(Expectation(within_s=1.0), replace(OK_FROM_MIRROR, seconds=1.7))["within"]
    assert not slow.ok and slow.actual == "1.7s"


@pytest.mark.parametrize("op,value,actual,holds", [("==", 3, 3, True), (">=", 0.95, 0.9, False), ("<", 10, 9, True), ("!=", 0, 0, False)])
def test_comparisons(op, value, actual, holds):
    assert Comparison(op, value).holds(actual) is holds


def test_a_step_with_no_attempt_is_judged_on_its_own_outcome():
    # A pull cut short by its deadline has no result; `error: TIMEOUT` still holds.
    cut = Outcome("pull", ok=False, error_code="TIMEOUT", message="step did not finish")
    judged = {v.what: v for v in judge_results(Expectation(error=("TIMEOUT",)), cut, Evidence())}
    assert judged["ok"].ok and judged["error"].ok and judged["error"].actual == "TIMEOUT"


def test_fewer_attempts_than_the_repeat_asked_for_fail():
    short = Outcome.of("pull", [OK_FROM_MIRROR] * 3, repeats_wanted=5)
    judged = {v.what: v for v in judge_results(Expectation(), short, Evidence())}
    assert not judged["repeats"].ok and judged["repeats"].actual == 3 and judged["repeats"].expected == 5


def test_action_results_are_judged_like_pulls():
    restart_failed = ActionResult(ok=False, error_code="COMPONENT_FAILED", message="mirror exited with code 2")
    judged = {v.what: v for v in judge_results(Expectation(error=("COMPONENT_FAILED",)), Outcome.of("restart", [restart_failed]), Evidence())}
    assert judged["ok"].ok and judged["error"].ok


def test_expectations_are_written_down_as_the_scenario_said_them():
    expect = Expectation(ok=False, error=("DENIED", "UNAUTHORIZED"), served_by="hub", within_s=2.0,
                         upstream=(Counts((("manifest", Comparison(">=", 1)),)),), success_rate=Comparison(">=", 0.95))
    assert expectation_texts(expect) == [
        "ok: false", "error: DENIED | UNAUTHORIZED", "served_by: hub", "upstream.manifest >= 1", "within: 2s", "success_rate >= 0.95",
    ]


def test_counts_filter_by_origin_and_status():
    events = [
        {"kind": "manifest", "origin": "mirror", "status": 404},
        {"kind": "manifest", "origin": "client", "status": 200},
        {"kind": "token", "origin": "mirror", "status": 429},
        {"kind": "manifest", "origin": "mirror", "status": None},
    ]
    wanted = (
        Counts((("manifest", Comparison("==", 2)),), origins=("mirror",)),
        Counts((("requests", Comparison("==", 2)),), status="4xx"),
        Counts((("manifest", Comparison("==", 1)),), origins=("mirror",), status="none"),
        Counts((("token", Comparison("==", 1)),), origins=("client",)),
    )
    result = verdicts(Expectation(upstream=wanted), OK_FROM_MIRROR, events)
    assert result["upstream[origin=mirror].manifest"].ok
    assert result["upstream[status=4xx].requests"].ok
    assert result["upstream[origin=mirror,status=none].manifest"].ok
    failed = result["upstream[origin=client].token"]
    assert not failed.ok and failed.actual == 0


def test_what_the_mirror_itself_answered_is_judged_apart_from_the_pull():
    from chaos.vocab.results import Attempt

    fell_back = PullResult(image="docker.io/library/nginx:1.25", ok=True, served_by="hub", digest="sha256:bb", attempts=(
        Attempt("mirror", "http://127.0.0.1:5000", False, status=404, error_code="MANIFEST_UNKNOWN", message="manifest unknown"),
        Attempt("hub", "https://registry-1.docker.io", True, status=200),
    ))
    expect = Expectation(mirror=MirrorAnswer(status=404, error=("MANIFEST_UNKNOWN",), message=re.compile("unknown")))
    result = verdicts(expect, fell_back)
    assert result["ok"].ok  # the pull itself succeeded, from Hub
    assert result["mirror.ok"].ok and result["mirror.status"].ok and result["mirror.error"].ok and result["mirror.message"].ok
    wrong = verdicts(Expectation(mirror=MirrorAnswer(status=500)), fell_back)["mirror.status"]
    assert not wrong.ok and wrong.actual == 404
    # A pull with no mirror attempt at all has no mirror answer to meet the expectation.
    assert not verdicts(Expectation(mirror=MirrorAnswer(status=404)), OK_FROM_MIRROR)["mirror.status"].ok


@pytest.mark.parametrize(("catalog_error", "storage_checked", "judged"), [
    (None, True, {"in_catalog": True, "in_storage": True}),
    (None, False, {"in_catalog": True}),
    ("catalog of http://m unavailable: 401", True, {"in_storage": True}),
    ("catalog of http://m unavailable: 401", False, None),
])
def test_a_check_judges_only_the_sources_it_could_look_at(catalog_error, storage_checked, judged):
    snap = MirrorSnapshot(catalog=() if catalog_error else ("library/alpine",), stored_repositories=("library/alpine",),
                          storage_bytes=1, catalog_error=catalog_error, storage_checked=storage_checked)
    verdicts = {v.what: v for v in judge_check(CheckAction(cached=("library/alpine",), not_cached=("alice/x",)), snap, None)}
    if judged is None:  # nothing to look at: no verdict on the repositories, only the catalog's failure
        assert list(verdicts) == ["mirror answers its catalog API"] and not verdicts["mirror answers its catalog API"].ok
        return
    assert verdicts["cached library/alpine"].actual == judged and verdicts["cached library/alpine"].ok
    assert verdicts["not cached alice/x"].actual == dict.fromkeys(judged, False) and verdicts["not cached alice/x"].ok
    assert ("mirror answers its catalog API" in verdicts) is bool(catalog_error)
