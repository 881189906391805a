import json

import jwt
import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from chaos.faults.faultset import FaultSet
from chaos.faults.flowdata import ORIGIN
from chaos.faults.kinds.rate_limit import RateLimit, token_subject
from chaos.faults.registry import kinds
from chaos.faults.spec import FaultSpecError, parse_fault_spec
from chaos.proxy.addon import HubChaos
from chaos.vocab.endpoints import Endpoint

MANIFEST = "https://registry-1.docker.io/v2/library/redis/manifests/7"
BLOB = "https://registry-1.docker.io/v2/library/redis/blobs/sha256:" + "ab" * 32
HUB_MESSAGE = (
    "You have reached your pull rate limit. You may increase the limit by authenticating "
    "and upgrading: https://www.docker.com/increase-rate-limit"
)


# Signed with a key the proxy never sees: the identity is read, not verified.
KEY = "a-key-the-fault-proxy-never-sees-at-all"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def bearer(sub):
    return "Bearer " + jwt.encode({"sub": sub, "access": []}, KEY, algorithm="HS256")


def limiter(clock=None, **params):
    spec = parse_fault_spec({"name": "pull-limit", "kind": "rate-limit", "params": params})
    return RateLimit(spec.params, clock=clock or Clock())


def request(kind, method="GET", url=MANIFEST, token=None, client="10.0.0.7", origin=None):
    """Run one request through the fault's hooks; an upstream answers `upstream_status`."""
    headers = {"Authorization": token} if token else {}
    f = tflow.tflow(req=http.Request.make(method, url, headers=headers))
    f.client_conn.peername = (client, 40000)
    if origin is not None:
        f.metadata[ORIGIN] = origin  # what the addon knows from the listener
    kind.on_request(f)
    return f


def through(kind, method="GET", url=MANIFEST, token=None, client="10.0.0.7", upstream_status=200, origin=None):
    f = request(kind, method, url, token, client, origin)
    if f.response is None:
        f.response = http.Response.make(upstream_status, b"{}")
    kind.on_response_headers(f)
    return f.response


def remaining(response):
    return response.headers["ratelimit-remaining"]


def test_kind_is_registered_as_rate_limit():
    assert kinds()["rate-limit"] is RateLimit


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 100},
        {"limit": 0},
        {"limit": 3, "window_s": 60, "identity": "client"},
        {"limit": 3, "identity": "user"},
        {"limit": 3.0, "window_s": 1},
    ],
)
def test_good_params_are_accepted(params):
    parsed = parse_fault_spec({"name": "f", "kind": "rate-limit", "params": params}).params
    assert parsed.limit == params["limit"]
    assert parsed.window_s == params.get("window_s", 21600)


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "params.limit"),
        ({"limit": -1}, "params.limit"),
        ({"limit": 2.5}, "params.limit"),
        ({"limit": "100"}, "params.limit"),
        ({"limit": 3, "window_s": 0}, "params.window_s"),
        ({"limit": 3, "window_s": -60}, "params.window_s"),
        ({"limit": 3, "identity": "ip"}, "params.identity"),
        ({"limit": 3, "window": 60}, "params.window"),
    ],
)
def test_bad_params_are_rejected_naming_the_field(params, field):
    with pytest.raises(FaultSpecError) as raised:
        parse_fault_spec({"name": "f", "kind": "rate-limit", "params": params})
    assert raised.value.field == field


def test_budget_of_three_lets_exactly_three_manifest_gets_through():
    kind = limiter(limit=3)
    answers = [through(kind) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [remaining(a) for a in answers] == ["2;w=21600", "1;w=21600", "0;w=21600", "0;w=21600"]
    assert all(a.headers["ratelimit-limit"] == "3;w=21600" for a in answers)


def test_refused_get_gets_hubs_429_body_and_headers_without_going_upstream():
    kind = limiter(limit=0)
    f = request(kind)
    assert f.response.status_code == 429
    assert json.loads(f.response.content) == {"errors": [{"code": "TOOMANYREQUESTS", "message": HUB_MESSAGE}]}
    assert f.response.headers["ratelimit-limit"] == "0;w=21600"
    assert f.response.headers["ratelimit-remaining"] == "0;w=21600"
    assert f.response.headers["docker-ratelimit-source"] == "10.0.0.7"
    assert f.response.headers["Content-Type"] == "application/json"


def test_the_refusal_is_reported_as_the_fault_acting_and_headers_are_not():
    kind = limiter(limit=1)
    passing = tflow.tflow(req=http.Request.make("GET", MANIFEST))
    assert kind.on_request(passing) is False
    passing.response = http.Response.make(200)
    assert kind.on_response_headers(passing) is False
    refused = tflow.tflow(req=http.Request.make("GET", MANIFEST))
    assert kind.on_request(refused) is True


def test_heads_never_count_and_are_never_refused_but_carry_the_headers():
    kind = limiter(limit=1)
    heads = [through(kind, "HEAD") for _ in range(5)]
    assert [(h.status_code, remaining(h)) for h in heads] == [(200, "1;w=21600")] * 5
    assert through(kind).status_code == 200
    spent_head = through(kind, "HEAD")
    assert (spent_head.status_code, remaining(spent_head)) == (200, "0;w=21600")
    assert through(kind).status_code == 429


@pytest.mark.parametrize("url", [BLOB, "https://registry-1.docker.io/v2/", "https://auth.docker.io/token"])
def test_other_endpoints_neither_count_nor_get_headers(url):
    kind = limiter(limit=0)
    answer = through(kind, url=url)
    assert answer.status_code == 200
    assert "ratelimit-limit" not in answer.headers


def test_a_get_the_registry_answers_401_is_not_a_pull():
    kind = limiter(limit=1)
    assert through(kind, upstream_status=401).status_code == 401
    assert through(kind).status_code == 200
    assert through(kind).status_code == 429


def test_sliding_window_gives_each_pull_back_window_seconds_after_it():
    clock = Clock()
    kind = limiter(clock, limit=2, window_s=60)
    through(kind)
    clock.now += 30
    through(kind)
    assert through(kind).status_code == 429
    clock.now += 30  # the first pull leaves the window, the second is still in it
    answer = through(kind)
    assert (answer.status_code, remaining(answer)) == (200, "0;w=60")
    assert through(kind).status_code == 429


def test_auto_identity_is_the_tokens_user_else_the_client_address():
    kind = limiter(limit=1)
    assert through(kind, token=bearer("alice"), client="10.0.0.1").headers["docker-ratelimit-source"] == "alice"
    # alice's budget follows her to another address; the address itself still has its own
    assert through(kind, token=bearer("alice"), client="10.0.0.2").status_code == 429
    anonymous = through(kind, token=bearer(""), client="10.0.0.2")
    assert (anonymous.status_code, anonymous.headers["docker-ratelimit-source"]) == (200, "10.0.0.2")
    assert through(kind, client="10.0.0.2").status_code == 429


def test_auto_identity_without_a_user_is_the_origin_when_the_proxy_knows_it():
    # Every lab component comes from 127.0.0.1: the origin stands for its machine.
    kind = limiter(limit=1)
    mirror = through(kind, client="127.0.0.1", origin="mirror")
    assert (mirror.status_code, mirror.headers["docker-ratelimit-source"]) == (200, "mirror")
    assert through(kind, client="127.0.0.1", origin="mirror").status_code == 429
    assert through(kind, client="127.0.0.1", origin="client").status_code == 200  # a budget of its own
    assert through(kind, client="127.0.0.1", origin="unknown").status_code == 200  # by address
    assert through(kind, client="127.0.0.1").status_code == 429
    assert through(kind, token=bearer("alice"), client="127.0.0.1", origin="mirror").status_code == 200


def test_client_identity_ignores_the_token_and_the_origin():
    kind = limiter(limit=1, identity="client")
    assert through(kind, client="127.0.0.1", origin="mirror").status_code == 200
    assert through(kind, client="127.0.0.1", origin="client").status_code == 429


def test_client_identity_ignores_the_token():
    kind = limiter(limit=1, identity="client")
    assert through(kind, token=bearer("alice"), client="10.0.0.1").headers["docker-ratelimit-source"] == "10.0.0.1"
    assert through(kind, token=bearer("bob"), client="10.0.0.1").status_code == 429


def test_user_identity_puts_every_anonymous_pull_in_one_budget():
    kind = limiter(limit=1, identity="user")
    first = through(kind, client="10.0.0.1", origin="mirror")
    assert first.headers["docker-ratelimit-source"] == "anonymous"
    assert through(kind, token=bearer(""), client="10.0.0.2").status_code == 429
    assert through(kind, token=bearer("alice"), client="10.0.0.2").status_code == 200


@pytest.mark.parametrize(
    "header, expected",
    [
        (bearer("alice"), "alice"),
        (bearer(""), None),
        ("Bearer not-a-jwt", None),
        ("Bearer ", None),
        ("Basic YWxpY2U6cHc=", None),
        ("", None),
        ("Bearer " + jwt.encode({"sub": 42}, KEY, algorithm="HS256"), None),
        ("Bearer " + jwt.encode({"sub": "bob", "exp": 1}, KEY, algorithm="HS256"), "bob"),
    ],
)
def test_token_subject_reads_the_sub_claim_without_verifying(header, expected):
    assert token_subject(header) == expected


def test_replacing_the_fault_starts_a_fresh_budget():
    spec = parse_fault_spec({"name": "pull-limit", "kind": "rate-limit", "params": {"limit": 1}})
    faults = FaultSet()
    faults.add(spec)
    endpoint = Endpoint("registry", "manifest", "library/redis", "7", "tag")
    [active] = faults.matching("registry-1.docker.io", "GET", endpoint)
    through(active.kind)
    assert through(active.kind).status_code == 429
    faults.replace(spec)
    [fresh] = faults.matching("registry-1.docker.io", "GET", endpoint)
    assert through(fresh.kind).status_code == 200


def test_a_flow_begun_before_a_replacement_leaves_the_new_budget_alone():
    old, new = limiter(limit=1), limiter(limit=1)
    f = request(old)
    f.response = http.Response.make(401)
    assert new.on_response_headers(f) is False
    assert "ratelimit-limit" not in f.response.headers
    assert new.remaining("10.0.0.7") == 1


def test_through_the_addon_the_fourth_get_is_refused_and_heads_pass():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(
            hub,
            hub_control="",
            hub_routes="registry=http://127.0.0.1:5001",
            hub_faults=json.dumps([{"name": "pull-limit", "kind": "rate-limit", "params": {"limit": 3}}]),
        )
        statuses = []
        for method in ["HEAD", "GET", "HEAD", "GET", "GET", "GET", "HEAD"]:
            f = tflow.tflow(req=http.Request.make(method, MANIFEST))
            hub.requestheaders(f)
            if f.response is None:
                f.response = http.Response.make(200)  # the upstream's answer
            hub.responseheaders(f)
            hub.response(f)
            statuses.append((method, f.response.status_code, f.response.headers["ratelimit-remaining"]))
        faults = [set((event["fault"] or "").split(",")) - {""} for event in hub.tap.since(0).events]
    assert statuses == [
        ("HEAD", 200, "3;w=21600"),
        ("GET", 200, "2;w=21600"),
        ("HEAD", 200, "2;w=21600"),
        ("GET", 200, "1;w=21600"),
        ("GET", 200, "0;w=21600"),
        ("GET", 429, "0;w=21600"),
        ("HEAD", 200, "0;w=21600"),
    ]
    assert faults == [set()] * 5 + [{"pull-limit"}, set()]  # the tap names the fault only where it refused
