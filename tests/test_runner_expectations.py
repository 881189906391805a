"""Verdicts from a step's outcome: each asked-for expectation judged against
what actually happened, with the actual value kept."""

from __future__ import annotations

import re

import pytest

from chaos.runner.expectations import evaluate, upstream_counts
from chaos.scenario.model import Comparison, Expectation

OK_FROM_MIRROR = {"ok": True, "served_by": "mirror", "digest": "sha256:aa", "error_code": None, "message": None}
DENIED = {"ok": False, "served_by": None, "digest": None, "error_code": "UNAUTHORIZED",
          "message": "pull access denied for alice/app, repository does not exist or may require 'docker login'"}
BLOB_FROM_UPSTREAM = {"kind": "blob", "status": 200, "bytes": 1234}
TOKEN = {"kind": "token", "status": 200, "bytes": 50}


def verdicts(expect, outcome, events=(), digests=None):
    outcomes = outcome if isinstance(outcome, list) else [outcome]
    return {v.what: v for v in evaluate(expect, outcomes, list(events), digests or {})}


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
    assert not verdicts(Expectation(from_cache=True), {**OK_FROM_MIRROR, "served_by": "hub"})["from_cache"].ok


def test_same_digest_as_an_earlier_step():
    expect = Expectation(same_digest_as="warm")
    assert verdicts(expect, OK_FROM_MIRROR, digests={"warm": "sha256:aa"})["same_digest_as warm"].ok
    assert not verdicts(expect, OK_FROM_MIRROR, digests={"warm": "sha256:bb"})["same_digest_as warm"].ok
    # An earlier step that failed has no digest: never equal.
    assert not verdicts(expect, {**OK_FROM_MIRROR, "digest": None}, digests={"warm": None})["same_digest_as warm"].ok


def test_upstream_counts_by_kind():
    events = [TOKEN, TOKEN, BLOB_FROM_UPSTREAM, {"kind": "blob", "status": 404, "bytes": 99}]
    assert upstream_counts(events) == {"requests": 4, "blob_bytes": 1234, "token": 2, "blob": 2}
    wanted = (("token", Comparison("==", 2)), ("manifest", Comparison("==", 0)), ("blob_bytes", Comparison("==", 0)))
    result = verdicts(Expectation(upstream=wanted), OK_FROM_MIRROR, events)
    assert result["upstream.token"].ok and result["upstream.manifest"].ok
    assert not result["upstream.blob_bytes"].ok and result["upstream.blob_bytes"].actual == 1234


def test_every_attempt_must_hold_without_a_success_rate():
    result = verdicts(Expectation(served_by="mirror"), [OK_FROM_MIRROR, {**OK_FROM_MIRROR, "served_by": "hub"}])
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
    assert verdicts(Expectation(within_s=1.0), {**OK_FROM_MIRROR, "seconds": 0.4})["within"].ok
    slow = verdicts(Expectation(within_s=1.0), {**OK_FROM_MIRROR, "seconds": 1.7})["within"]
    assert not slow.ok and slow.actual == "1.7s"


@pytest.mark.parametrize("op,value,actual,holds", [("==", 3, 3, True), (">=", 0.95, 0.9, False), ("<", 10, 9, True), ("!=", 0, 0, False)])
def test_comparisons(op, value, actual, holds):
    assert Comparison(op, value).holds(actual) is holds
