import contextlib
import importlib.util
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow

from chaos.proxy.addon import HubChaos
from chaos.proxy.cdn_redirect import PROBE, PROBE_RANGE, CdnRedirect
from chaos.proxy.cdn_urls import URL_TTL_S, blob_path, check_signature

ROOT = Path(__file__).resolve().parents[1]
REGISTRY_URL = "https://registry-1.docker.io"
ROUTES = "registry=http://127.0.0.1:5001,auth=http://127.0.0.1:5002,cdn=http://127.0.0.1:5003"
DIGEST = "sha256:" + "ab" * 32
BLOB = f"/v2/library/alpine/blobs/{DIGEST}"
SECRET = b"0123456789abcdef0123456789abcdef"
CHALLENGE = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:alice/private:pull"'
UNAUTHORIZED = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}\n'


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "cdn-secret"
    path.write_bytes(SECRET + b"\n")
    return path


@contextlib.contextmanager
def configured(routes=ROUTES, **cdn_options):
    """CdnRedirect and HubChaos in the order addons/hub_chaos.py lists them."""
    cdn, hub = CdnRedirect(), HubChaos()
    with taddons.context(cdn, hub) as tctx:
        tctx.configure(hub, hub_routes=routes, hub_control="")
        tctx.configure(cdn, **cdn_options)
        hub.tctx = tctx
        yield [cdn, hub]


@pytest.fixture
def proxy(secret_file):
    with configured(hub_cdn_secret_file=str(secret_file)) as addons:
        yield addons


def request_flow(path=BLOB, method="GET", base=REGISTRY_URL, headers=()):
    host = base.split("://")[1]
    return tflow.tflow(req=http.Request.make(method, base + path, headers={"Host": host, **dict(headers)}))


def upstream_answer(status, body=b"", headers=()):
    return http.Response.make(status, body, dict(headers))


def hook(addons, name, flow):
    """Call hook `name` of every addon that has it, in list order, as mitmproxy does."""
    for addon in addons:
        if hasattr(addon, name):
            getattr(addon, name)(flow)


def send_upstream(addons, flow):
    """The request half: requestheaders, then request, of every addon in list order."""
    hook(addons, "requestheaders", flow)
    hook(addons, "request", flow)


def exchange(addons, flow, upstream, chunks=()):
    """Drive every addon's hooks in list order, the way mitmproxy does, with
    `upstream` as the server's answer; returns the body bytes the client gets."""
    send_upstream(addons, flow)
    if flow.response is None and flow.error is None:
        flow.response = upstream
    hook(addons, "responseheaders", flow)
    sent = b""
    if flow.response.stream:
        for chunk in (*chunks, b""):
            sent += flow.response.stream(chunk)
    else:
        sent = flow.response.raw_content or b""
    for addon in addons:
        if hasattr(addon, "response"):
            addon.response(flow)
    return sent


def probe_answer():
    # What the hub registry answers to the probe: one byte of the blob.
    return upstream_answer(206, b"", {"Content-Range": "bytes 0-0/1000", "Docker-Distribution-Api-Version": "registry/2.0"})


def test_blob_get_goes_upstream_as_a_get_with_a_one_byte_range(proxy):
    flow = request_flow()
    send_upstream(proxy, flow)
    assert flow.request.method == "GET"
    assert flow.request.headers["Range"] == PROBE_RANGE
    assert flow.metadata[PROBE] == DIGEST
    assert (flow.request.host, flow.request.port) == ("127.0.0.1", 5001)  # HubChaos still routed it


def test_readable_blob_is_answered_307_to_a_signed_cdn_url(proxy):
    flow = request_flow()
    before = time.time()
    sent = exchange(proxy, flow, probe_answer(), chunks=[b"\x1f"])
    response = flow.response
    assert response.status_code == 307
    assert sent == b"" and response.headers["Content-Length"] == "0"
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    location = urlsplit(response.headers["Location"])
    assert (location.scheme, location.hostname) == ("https", "production.cloudflare.docker.com")
    assert location.path == blob_path(DIGEST)
    assert check_signature(SECRET, location.path, location.query, time.time()) is None
    expires = int(location.query.split("=", 1)[1].split("-", 1)[0])
    assert before + URL_TTL_S - 1 <= expires <= time.time() + URL_TTL_S + 1
    # Valid for twenty minutes, not for ever.
    assert check_signature(SECRET, location.path, location.query, time.time() + URL_TTL_S + 2) is not None
    assert "Range" not in flow.request.headers  # the flow keeps what the client sent


def test_tap_records_the_registry_blob_get_as_the_client_saw_it(proxy):
    hub = proxy[1]
    exchange(proxy, request_flow(), probe_answer(), chunks=[b"\x1f"])
    (event,) = hub.tap.since(0).events
    assert (event["role"], event["kind"], event["method"], event["status"], event["bytes"]) == (
        "registry", "blob", "GET", 307, 0,
    )
    assert event["reference"] == DIGEST


@pytest.mark.parametrize(
    "status, body, headers",
    [
        (401, UNAUTHORIZED, {"WWW-Authenticate": CHALLENGE, "Content-Type": "application/json"}),
        (404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}\n', {}),
        (503, b"upstream down\n", {}),
        (307, b"", {"Location": "https://production.cloudflare.docker.com/real-hub-redirect"}),
    ],
)
def test_other_registry_answers_pass_through_unchanged(proxy, status, body, headers):
    flow = request_flow("/v2/alice/private/blobs/" + DIGEST)
    upstream = upstream_answer(status, body, headers)
    sent = exchange(proxy, flow, upstream, chunks=[body])
    assert flow.response is upstream
    assert flow.response.status_code == status
    assert sent == body
    for name, value in headers.items():
        assert flow.response.headers[name] == value


def test_registry_ignoring_the_range_still_redirects_and_sends_no_body(proxy):
    flow = request_flow()
    sent = exchange(proxy, flow, upstream_answer(200, b"", {"Content-Length": "3"}), chunks=[b"abc"])
    assert flow.response.status_code == 307 and sent == b""


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("HEAD", BLOB, {}),  # a HEAD stays with the registry (no body to move)
        ("GET", "/v2/library/alpine/manifests/3.19", {}),
        ("GET", "/v2/library/alpine/blobs/sha512:" + "ab" * 64, {}),  # no CDN path for it
        ("GET", "/v2/library/alpine/blobs/uploads/", {}),
        ("GET", "/v2/", {}),
    ],
)
def test_requests_other_than_plain_blob_gets_are_left_alone(proxy, method, path, headers):
    flow = request_flow(path, method, headers=headers)
    upstream = upstream_answer(206 if "Range" in headers else 200, b"x", {})
    exchange(proxy, flow, upstream, chunks=[b"x"])
    assert flow.response is upstream
    assert PROBE not in flow.metadata
    assert flow.request.headers.get("Range") == headers.get("Range")


def test_cdn_and_auth_hosts_are_left_alone(proxy):
    cdn_flow = request_flow(blob_path(DIGEST) + "?verify=1-x", base="https://production.cloudflare.docker.com")
    auth_flow = request_flow("/token?service=registry.docker.io", base="https://auth.docker.io")
    for flow in (cdn_flow, auth_flow):
        upstream = upstream_answer(200, b"data", {})
        exchange(proxy, flow, upstream, chunks=[b"data"])
        assert flow.response is upstream and PROBE not in flow.metadata


def test_flow_hub_chaos_did_not_see_is_classified_by_request_host(proxy):
    cdn = proxy[0]
    flow = request_flow(headers={"Host": "127.0.0.1:8080"})  # reverse mode: Host is the proxy's
    exchange([cdn], flow, probe_answer(), chunks=[b"\x1f"])
    assert flow.response.status_code == 307


def test_flow_answered_by_a_fault_is_left_alone(proxy):
    flow = request_flow()
    flow.response = upstream_answer(503, b"fault", {})
    proxy[0].request(flow)
    assert PROBE not in flow.metadata and "Range" not in flow.request.headers


def test_flow_killed_while_probing_is_not_answered(proxy):
    flow = request_flow()
    send_upstream(proxy, flow)
    flow.response = probe_answer()
    flow.kill()
    proxy[0].responseheaders(flow)
    assert flow.response.status_code == 206  # the error wins; no 307 after a kill
    assert "Range" not in flow.request.headers  # the client's headers, whatever happened


@pytest.mark.parametrize(
    "options",
    [{"hub_cdn_host": ""}, {"hub_cdn_secret_file": ""}, {"hub_cdn_host": "", "routes": ""}],
)
def test_redirects_are_off_without_a_host_or_a_secret(secret_file, options):
    with configured(**{"hub_cdn_secret_file": str(secret_file), **options}) as addons:
        flow = request_flow()
        upstream = upstream_answer(200, b"blob", {})
        exchange(addons, flow, upstream, chunks=[b"blob"])
    assert not addons[0].enabled
    assert flow.response is upstream and "Range" not in flow.request.headers


def test_another_cdn_host_is_used_in_the_location(secret_file):
    options = {"hub_cdn_secret_file": str(secret_file), "hub_cdn_host": "EU.cloudflare.docker.com"}
    with configured(**options) as addons:
        flow = request_flow()
        exchange(addons, flow, probe_answer())
    assert urlsplit(flow.response.headers["Location"]).hostname == "eu.cloudflare.docker.com"


@pytest.mark.parametrize("routes", ["", "registry=http://127.0.0.1:5001,auth=http://127.0.0.1:5002"])
def test_redirects_without_a_cdn_route_are_rejected(secret_file, routes):
    # The signed lab URL would otherwise go to the real CDN, off the machine.
    with pytest.raises(exceptions.OptionsError) as info:
        with configured(routes=routes, hub_cdn_secret_file=str(secret_file)):
            pass
    assert repr(str(secret_file)) in str(info.value) and "cdn= route" in str(info.value)


def test_dropping_the_cdn_route_later_is_rejected(proxy):
    hub = proxy[1]
    with pytest.raises(exceptions.OptionsError, match="cdn= route"):
        hub.tctx.configure(hub, hub_routes="registry=http://127.0.0.1:5001")


@pytest.mark.parametrize(
    "value, problem",
    [
        ("cdn.example.com", "serves only production.cloudflare.docker.com"),
        ("https://production.cloudflare.docker.com", "bare host name"),
        ("production.cloudflare.docker.com:443", "bare host name"),
        ("production.cloudflare.docker.com/x", "bare host name"),
        ("docker.com", "serves only"),
    ],
)
def test_bad_cdn_host_is_rejected_quoting_the_value(value, problem):
    cdn = CdnRedirect()
    with taddons.context(cdn) as tctx:
        with pytest.raises(exceptions.OptionsError) as info:
            tctx.configure(cdn, hub_cdn_host=value)
    assert repr(value) in str(info.value) and problem in str(info.value)


def test_unreadable_or_short_secret_file_is_rejected_quoting_the_value(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    for value, problem in ((str(tmp_path / "missing"), "cannot read"), (str(short), "at least 16")):
        cdn = CdnRedirect()
        with taddons.context(cdn) as tctx:
            with pytest.raises(exceptions.OptionsError) as info:
                tctx.configure(cdn, hub_cdn_secret_file=value)
        assert repr(value) in str(info.value) and problem in str(info.value)


def test_mitmdump_script_lists_the_redirect_before_hub_chaos():
    spec = importlib.util.spec_from_file_location("hub_chaos_script", ROOT / "addons" / "hub_chaos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert [type(addon) for addon in module.addons] == [CdnRedirect, HubChaos]


@pytest.mark.parametrize("client_range", ["bytes=100-", "bytes=0-99", "bytes=-500"])
def test_range_gets_are_redirected_too_and_keep_the_clients_range(proxy, client_range):
    # Hub redirects resumed downloads to its CDN as well; the client re-sends its Range there.
    flow = request_flow(headers={"Range": client_range})
    send_upstream(proxy, flow)
    assert flow.request.headers["Range"] == PROBE_RANGE  # the probe decides readability
    flow.response = probe_answer()
    hook(proxy, "responseheaders", flow)
    assert flow.response.status_code == 307 and flow.response.stream(b"\x1f") == b""
    assert flow.request.headers["Range"] == client_range


def test_the_probe_drops_if_range_and_the_flow_gets_it_back(proxy):
    # A stale If-Range would turn the one-byte probe into a whole-blob GET.
    flow = request_flow(headers={"Range": "bytes=100-", "If-Range": '"old-etag"'})
    send_upstream(proxy, flow)
    assert "If-Range" not in flow.request.headers and flow.request.headers["Range"] == PROBE_RANGE
    flow.response = probe_answer()
    hook(proxy, "responseheaders", flow)
    assert flow.response.status_code == 307
    assert (flow.request.headers["Range"], flow.request.headers["If-Range"]) == ("bytes=100-", '"old-etag"')


def test_a_range_get_the_client_may_not_read_gets_the_registrys_answer(proxy):
    flow = request_flow("/v2/alice/private/blobs/" + DIGEST, headers={"Range": "bytes=100-"})
    upstream = upstream_answer(401, UNAUTHORIZED, {"WWW-Authenticate": CHALLENGE})
    assert exchange(proxy, flow, upstream, chunks=[UNAUTHORIZED]) == UNAUTHORIZED
    assert flow.response is upstream and flow.request.headers["Range"] == "bytes=100-"


def test_faults_see_the_clients_request_without_the_probe(proxy):
    flow = request_flow()
    hook(proxy, "requestheaders", flow)  # HubChaos's faults act here
    assert "Range" not in flow.request.headers
    hook(proxy, "request", flow)
    assert flow.request.headers["Range"] == PROBE_RANGE


@pytest.mark.parametrize(
    "kind, params",
    [
        ("corrupt", {"at_byte": 0}),
        ("truncate", {"after_bytes": 0}),
        ("stall", {"after_bytes": 0, "stall_ms": 1}),
        ("reset", {"after_bytes": 1}),
    ],
)
def test_body_faults_leave_the_redirect_alone_and_do_not_count_it(proxy, kind, params):
    # The client gets a clean 307: the probe's hidden byte is no body to act on (issue 10).
    hub = proxy[1]
    hub.tctx.configure(hub, hub_faults=json.dumps([{"name": "f", "kind": kind, "params": params,
                                                    "match": {"endpoints": ["blob"]}}]))  # fmt: skip
    flow = request_flow()
    sent = exchange(proxy, flow, probe_answer(), chunks=[b"\x1f"])
    assert (flow.response.status_code, sent, flow.error) == (307, b"", None)
    [event] = hub.tap.since(0).events
    assert (event["status"], event["fault"], event["error"]) == (307, None, None)
    [fault] = hub.faults.specs()
    assert fault.counters.to_dict() == {"matched": 1, "fired": 1, "applied": 0}


def test_body_faults_still_act_on_an_error_the_registry_sends_through(proxy):
    hub = proxy[1]
    hub.tctx.configure(hub, hub_faults=json.dumps([{"name": "f", "kind": "corrupt", "params": {"at_byte": 0}}]))
    flow = request_flow("/v2/alice/private/blobs/" + DIGEST)
    upstream = upstream_answer(401, UNAUTHORIZED, {"Content-Length": str(len(UNAUTHORIZED))})
    sent = exchange(proxy, flow, upstream, chunks=[UNAUTHORIZED])
    assert sent[0] == UNAUTHORIZED[0] ^ 0xFF and sent[1:] == UNAUTHORIZED[1:]
    assert hub.faults.specs()[0].counters.applied == 1
