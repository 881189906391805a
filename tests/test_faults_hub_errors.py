import json

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.faults.hub_errors import (
    NO_DETAIL,
    balancer_page,
    bearer_challenge,
    default_error,
    endpoint_of,
    error_document,
    json_response,
    registry_error,
    token_error,
)
from chaos.vocab.codes import ERROR_CODE
from chaos.vocab.codes import HUB_RATE_LIMIT_MESSAGE as RATE_LIMIT_MESSAGE
from chaos.vocab.endpoints import Endpoint

DIGEST = "sha256:" + "ab" * 32


def flow(method="GET", url="https://registry-1.docker.io/v2/library/redis/manifests/7", headers=None):
    return tflow.tflow(req=http.Request.make(method, url, headers=headers or {}))


def test_endpoint_of_names_hubs_service_and_endpoint():
    assert endpoint_of(flow()) == Endpoint("registry", "manifest", "library/redis", "7", "tag")
    token = flow(url="https://auth.docker.io/token?service=registry.docker.io&scope=repository:library/redis:pull")
    assert endpoint_of(token) == Endpoint("auth", "token", "library/redis")


@pytest.mark.parametrize(
    "scope, error, expected",
    [
        (None, None, 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'),
        (
            "repository:library/redis:pull",
            None,
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/redis:pull"',
        ),
        (
            "repository:alice/private:pull",
            "insufficient_scope",
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:alice/private:pull",error="insufficient_scope"',
        ),
    ],
)
def test_bearer_challenge_reads_like_hubs(scope, error, expected):
    assert bearer_challenge(scope, error) == expected


MANIFEST_TAG = Endpoint("registry", "manifest", "library/redis", "7", "tag")
MANIFEST_DIGEST = Endpoint("registry", "manifest", "library/redis", DIGEST, "digest")
BLOB = Endpoint("registry", "blob", "library/redis", DIGEST, "digest")
TAGS = Endpoint("registry", "tags", "library/redis")
PING = Endpoint("registry", "ping")
PULL_DETAIL = [{"Type": "repository", "Class": "", "Name": "library/redis", "Action": "pull"}]


@pytest.mark.parametrize(
    "status, endpoint, expected",
    [
        (401, MANIFEST_TAG, ("UNAUTHORIZED", "authentication required", PULL_DETAIL)),
        (401, PING, ("UNAUTHORIZED", "authentication required", None)),
        (403, BLOB, ("DENIED", "requested access to the resource is denied", PULL_DETAIL)),
        (404, MANIFEST_TAG, ("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": "7"})),
        (404, MANIFEST_DIGEST, ("MANIFEST_UNKNOWN", "manifest unknown", {"Name": "library/redis", "Revision": DIGEST})),
        (404, BLOB, ("BLOB_UNKNOWN", "blob unknown to registry", DIGEST)),
        (404, TAGS, ("NAME_UNKNOWN", "repository name not known to registry", {"name": "library/redis"})),
        (404, PING, ("NAME_UNKNOWN", "repository name not known to registry", None)),
        (405, BLOB, ("UNSUPPORTED", "The operation is unsupported.", None)),
        (429, MANIFEST_TAG, ("TOOMANYREQUESTS", RATE_LIMIT_MESSAGE, None)),
        (500, MANIFEST_TAG, ("UNKNOWN", "unknown error", None)),
        (503, BLOB, ("UNAVAILABLE", "service unavailable", None)),
        (502, BLOB, ("UNKNOWN", "unknown error", None)),
        (418, BLOB, ("UNKNOWN", "unknown error", None)),
    ],
)
def test_default_error_per_status_and_endpoint(status, endpoint, expected):
    assert default_error(status, endpoint) == expected


def test_error_document_keeps_detail_even_when_null_and_can_leave_it_out():
    assert error_document("UNKNOWN", "unknown error", None) == {
        "errors": [{"code": "UNKNOWN", "message": "unknown error", "detail": None}]
    }
    assert error_document("TOOMANYREQUESTS", "slow down", NO_DETAIL) == {
        "errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]
    }


@pytest.mark.parametrize("code", ["UNKNOWN", "MANIFEST_UNKNOWN", "X1", "TOO_MANY_2"])
def test_upper_snake_codes_are_error_codes(code):
    assert ERROR_CODE.match(code)


@pytest.mark.parametrize("code", ["", "unknown", "Manifest_Unknown", "_X", "X_", "A__B", "A-B", "1X"])
def test_other_spellings_are_not_error_codes(code):
    assert not ERROR_CODE.match(code)


def test_registry_401_without_token_challenges_for_the_repository():
    response = registry_error(flow(), 401, "UNAUTHORIZED", "authentication required", PULL_DETAIL)
    assert response.headers["WWW-Authenticate"] == bearer_challenge("repository:library/redis:pull")
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.content)["errors"][0]["detail"] == PULL_DETAIL


def test_registry_401_to_a_bearer_token_says_insufficient_scope():
    with_token = flow(headers={"Authorization": "Bearer abc.def.ghi"})
    response = registry_error(with_token, 401, "UNAUTHORIZED", "authentication required")
    assert response.headers["WWW-Authenticate"].endswith(',error="insufficient_scope"')


def test_other_statuses_carry_no_challenge():
    response = registry_error(flow(), 503, "UNAVAILABLE", "service unavailable")
    assert "WWW-Authenticate" not in response.headers


def test_head_answer_has_the_length_of_its_body_but_no_body():
    get = json_response(flow(), 404, {"errors": []})
    head = json_response(flow("HEAD"), 404, {"errors": []})
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content)) != "0"


def test_token_error_is_the_auth_services_details_shape():
    response = token_error(flow(url="https://auth.docker.io/token"), 401, "incorrect username or password")
    assert (response.status_code, response.json()) == (401, {"details": "incorrect username or password"})


@pytest.mark.parametrize(
    "status, title",
    [(503, b"<h1>503 Service Unavailable</h1>"), (502, b"<h1>502 Bad Gateway</h1>"), (599, b"<h1>599 Error</h1>")],
)
def test_balancer_page_is_html_with_the_status(status, title):
    response = balancer_page(flow(url="https://auth.docker.io/token"), status)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "text/html"
    assert title in response.content
