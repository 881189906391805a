import json

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from chaos.faults.kinds.http_error import HttpError
from chaos.faults.registry import kinds
from chaos.faults.spec import FaultSpecError, parse_fault_spec
from chaos.proxy.addon import HubChaos

REGISTRY = "https://registry-1.docker.io"
DIGEST = "sha256:" + "cd" * 32


def flow(path="/v2/library/redis/manifests/7", method="GET", headers=None):
    return tflow.tflow(req=http.Request.make(method, REGISTRY + path, headers=headers or {}))


def fault(**params):
    return HttpError(parse_fault_spec({"name": "f", "kind": "http", "params": params}).params)


def answer(path="/v2/library/redis/manifests/7", method="GET", headers=None, **params):
    f = flow(path, method, headers)
    assert fault(**params).on_request(f) is True
    return f.response


def only_error(response):
    [error] = json.loads(response.content)["errors"]
    return error


def test_kind_is_registered_as_http():
    assert kinds()["http"] is HttpError


@pytest.mark.parametrize(
    "params",
    [
        {"status": 503},
        {"status": 400},
        {"status": 599},
        {"status": 500, "code": "INTERNAL_ERROR", "message": "boom"},
        {"status": 429, "retry_after_s": 60},
        {"status": 503.0},
    ],
)
def test_good_params_are_accepted(params):
    spec = parse_fault_spec({"name": "f", "kind": "http", "params": params})
    assert spec.params.status == int(params["status"])


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "params.status"),
        ({"status": 200}, "params.status"),
        ({"status": 399}, "params.status"),
        ({"status": 600}, "params.status"),
        ({"status": -500}, "params.status"),
        ({"status": "503"}, "params.status"),
        ({"status": 503.5}, "params.status"),
        ({"status": 503, "code": "unavailable"}, "params.code"),
        ({"status": 503, "code": "NOT-SNAKE"}, "params.code"),
        ({"status": 503, "code": ""}, "params.code"),
        ({"status": 503, "message": "  "}, "params.message"),
        ({"status": 503, "retry_after_s": -1}, "params.retry_after_s"),
        ({"status": 503, "retry_after_s": 1.5}, "params.retry_after_s"),
        ({"status": 503, "delay_ms": 5}, "params.delay_ms"),
    ],
)
def test_bad_params_are_rejected_naming_the_field(params, field):
    with pytest.raises(FaultSpecError) as raised:
        parse_fault_spec({"name": "f", "kind": "http", "params": params})
    assert raised.value.field == field


@pytest.mark.parametrize(
    "status, path, code, message",
    [
        (500, "/v2/library/redis/manifests/7", "UNKNOWN", "unknown error"),
        (503, "/v2/library/redis/manifests/7", "UNAVAILABLE", "service unavailable"),
        (404, "/v2/library/redis/manifests/7", "MANIFEST_UNKNOWN", "manifest unknown"),
        (404, f"/v2/library/redis/blobs/{DIGEST}", "BLOB_UNKNOWN", "blob unknown to registry"),
        (404, "/v2/library/redis/tags/list", "NAME_UNKNOWN", "repository name not known to registry"),
        (403, "/v2/library/redis/manifests/7", "DENIED", "requested access to the resource is denied"),
        (429, "/v2/library/redis/manifests/7", "TOOMANYREQUESTS", "You have reached your pull rate limit."),
    ],
)
def test_each_status_gets_hubs_code_and_message(status, path, code, message):
    response = answer(path, status=status)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    error = only_error(response)
    assert set(error) == {"code", "message", "detail"}
    assert error["code"] == code
    assert error["message"].startswith(message)


def test_401_challenges_for_the_repository_like_hub():
    response = answer(status=401)
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/redis:pull"'
    )
    assert only_error(response) == {
        "code": "UNAUTHORIZED",
        "message": "authentication required",
        "detail": [{"Type": "repository", "Class": "", "Name": "library/redis", "Action": "pull"}],
    }


def test_401_to_a_request_with_a_token_says_insufficient_scope():
    response = answer(headers={"Authorization": "Bearer x.y.z"}, status=401)
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_manifest_404_detail_names_the_tag():
    assert only_error(answer(status=404))["detail"] == {"Tag": "7"}


def test_own_message_keeps_the_default_code_and_detail():
    error = only_error(answer(status=404, message="no such tag"))
    assert error == {"code": "MANIFEST_UNKNOWN", "message": "no such tag", "detail": {"Tag": "7"}}


def test_own_code_replaces_the_default_and_drops_its_detail():
    error = only_error(answer(status=404, code="NAME_UNKNOWN", message="gone"))
    assert error == {"code": "NAME_UNKNOWN", "message": "gone", "detail": None}


def test_retry_after_is_sent_only_when_asked():
    assert answer(status=503, retry_after_s=30).headers["Retry-After"] == "30"
    assert "Retry-After" not in answer(status=503).headers


def test_head_gets_the_status_and_headers_without_a_body():
    response = answer(method="HEAD", status=404)
    assert response.status_code == 404
    assert response.content == b""
    assert int(response.headers["Content-Length"]) > 0


def test_through_the_addon_the_request_never_goes_upstream():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(
            hub,
            hub_control="",
            hub_routes="registry=http://127.0.0.1:5001",
            hub_faults=json.dumps(
                [{"name": "manifests-down", "kind": "http", "params": {"status": 503}, "match": {"endpoints": ["manifest"]}}]
            ),
        )
        manifest, blob = flow(), flow(f"/v2/library/redis/blobs/{DIGEST}")
        hub.requestheaders(manifest)
        hub.requestheaders(blob)
    assert manifest.response.status_code == 503
    assert manifest.request.host == "registry-1.docker.io"  # not routed: nothing went upstream
    assert blob.response is None
    assert (blob.request.host, blob.request.port) == ("127.0.0.1", 5001)
