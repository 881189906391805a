import base64
import json
from urllib.parse import parse_qs

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from chaos.faults.kinds.auth_deny import AuthDeny
from chaos.faults.registry import kinds
from chaos.faults.spec import FaultSpecError, parse_fault_spec
from chaos.proxy.addon import HubChaos

TOKEN_URL = "https://auth.docker.io/token?service=registry.docker.io&scope=repository:library/redis:pull"
TWO_SCOPES = TOKEN_URL + "&scope=repository:alice/app:pull,push&account=alice"
BASIC = {"Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def fault(**params):
    return AuthDeny(parse_fault_spec({"name": "f", "kind": "auth-deny", "params": params}).params)


def flow(url=TOKEN_URL, method="GET", headers=None, content=b""):
    return tflow.tflow(req=http.Request.make(method, url, content, headers or {}))


def test_kind_is_registered_as_auth_deny():
    assert kinds()["auth-deny"] is AuthDeny


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "bad-credentials"},
        {"mode": "bad-credentials", "details": "token expired"},
        {"mode": "forbidden"},
        {"mode": "unavailable"},
        {"mode": "unavailable", "status": 502},
        {"mode": "no-scope"},
    ],
)
def test_good_params_are_accepted(params):
    assert parse_fault_spec({"name": "f", "kind": "auth-deny", "params": params}).params.mode == params["mode"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "params.mode"),
        ({"mode": "refuse"}, "params.mode"),
        ({"mode": 401}, "params.mode"),
        ({"mode": "unavailable", "status": 429}, "params.status"),
        ({"mode": "unavailable", "status": 600}, "params.status"),
        ({"mode": "forbidden", "status": 503}, "params.status"),
        ({"mode": "no-scope", "details": "x"}, "params.details"),
        ({"mode": "forbidden", "details": ""}, "params.details"),
        ({"mode": "forbidden", "scope": "x"}, "params.scope"),
    ],
)
def test_bad_params_are_rejected_naming_the_field(params, field):
    with pytest.raises(FaultSpecError) as raised:
        parse_fault_spec({"name": "f", "kind": "auth-deny", "params": params})
    assert raised.value.field == field


@pytest.mark.parametrize("mode", ["bad-credentials", "forbidden", "unavailable", "no-scope"])
@pytest.mark.parametrize(
    "url",
    [
        "https://registry-1.docker.io/v2/library/redis/manifests/7",
        "https://registry-1.docker.io/v2/",
        "https://auth.docker.io/v2/users/login",
        "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/ab/x/data",
    ],
)
def test_requests_other_than_token_requests_pass_untouched(mode, url):
    f = flow(url, headers=BASIC)
    before = f.request.url
    assert fault(mode=mode).on_request(f) is False
    assert f.response is None
    assert f.request.url == before


def test_bad_credentials_answers_hubs_401_to_basic_auth():
    f = flow(headers=BASIC)
    assert fault(mode="bad-credentials").on_request(f) is True
    assert f.response.status_code == 401
    assert f.response.headers["Content-Type"] == "application/json"
    assert json.loads(f.response.content) == {"details": "incorrect username or password"}


def test_bad_credentials_answers_any_oauth_post():
    f = flow("https://auth.docker.io/token", "POST", FORM, b"grant_type=password&username=alice&password=x")
    assert fault(mode="bad-credentials", details="password expired").on_request(f) is True
    assert json.loads(f.response.content) == {"details": "password expired"}


def test_bad_credentials_lets_anonymous_token_requests_through():
    f = flow()
    assert fault(mode="bad-credentials").on_request(f) is False
    assert f.response is None


def test_forbidden_answers_403_with_details():
    f = flow()
    assert fault(mode="forbidden").on_request(f) is True
    assert f.response.status_code == 403
    assert set(json.loads(f.response.content)) == {"details"}


@pytest.mark.parametrize("status, expected", [(None, 503), (500, 500), (504, 504)])
def test_unavailable_answers_the_balancers_5xx_page(status, expected):
    f = flow(headers=BASIC)
    params = {"mode": "unavailable"} if status is None else {"mode": "unavailable", "status": status}
    assert fault(**params).on_request(f) is True
    assert f.response.status_code == expected
    assert f.response.headers["Content-Type"] == "text/html"
    assert f"<h1>{expected} ".encode() in f.response.content


def test_no_scope_removes_every_scope_and_keeps_the_rest_of_the_query():
    f = flow(TWO_SCOPES, headers=BASIC)
    assert fault(mode="no-scope").on_request(f) is True
    assert f.response is None  # it goes upstream, to the real token service
    assert list(f.request.query.items(multi=True)) == [("service", "registry.docker.io"), ("account", "alice")]
    assert f.request.headers["Authorization"] == BASIC["Authorization"]


def test_no_scope_on_a_request_without_scope_changes_nothing():
    f = flow("https://auth.docker.io/token?service=registry.docker.io")
    assert fault(mode="no-scope").on_request(f) is False
    assert f.request.url == "https://auth.docker.io/token?service=registry.docker.io"


def test_no_scope_strips_the_oauth_form_as_it_streams_keeping_its_length():
    body = b"grant_type=password&scope=repository%3Aalice%2Fapp%3Apull+repository:x:pull&username=alice&password=pw"
    f = flow("https://auth.docker.io/token", "POST", {**FORM, "Content-Length": str(len(body))})
    f.request.raw_content = None  # as in requestheaders: the body has not arrived yet
    assert fault(mode="no-scope").on_request(f) is True
    stream = f.request.stream
    sent = [stream(body[:30]), stream(body[30:]), stream(b"")]
    assert sent[:2] == [[], []]  # held until the end of the body
    assert len(sent[2]) == len(body)
    form = parse_qs(sent[2].decode())
    assert form == {"grant_type": ["password"], "username": ["alice"], "password": ["pw"]}


def test_no_scope_rewrites_a_form_body_that_is_already_read():
    body = b"scope=repository%3Ax%3Apull&grant_type=refresh_token&refresh_token=abc"
    f = flow("https://auth.docker.io/token", "POST", FORM, body)
    assert fault(mode="no-scope").on_request(f) is True
    assert len(f.request.raw_content) == len(body)
    assert parse_qs(f.request.raw_content.decode()) == {"grant_type": ["refresh_token"], "refresh_token": ["abc"]}


def test_no_scope_lets_an_oversized_body_through_unchanged():
    body = b"scope=x&" + b"a" * (70 * 1024)
    f = flow("https://auth.docker.io/token", "POST", FORM)
    f.request.raw_content = None
    fault(mode="no-scope").on_request(f)
    assert f.request.stream(body) == body
    assert f.request.stream(b"more") == b"more"


def test_through_the_addon_a_stripped_token_request_is_still_routed_upstream():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(
            hub,
            hub_control="",
            hub_routes="auth=http://127.0.0.1:5002",
            hub_faults=json.dumps([{"name": "no-scope", "kind": "auth-deny", "params": {"mode": "no-scope"}}]),
        )
        f = flow()
        hub.requestheaders(f)
    assert f.response is None
    assert (f.request.host, f.request.port) == ("127.0.0.1", 5002)
    assert "scope" not in f.request.query
