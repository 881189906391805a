import asyncio
import json

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow

from chaos.proxy.addon import HubChaos, load_fault_specs

REGISTRY_URL = "https://registry-1.docker.io"
ROUTES = "registry=http://127.0.0.1:5001,auth=http://127.0.0.1:5002"


@pytest.fixture
def addon():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(hub, hub_routes=ROUTES, hub_control="")
        hub.tctx = tctx
        yield hub


def request_flow(path="/v2/", base=REGISTRY_URL, method="GET"):
    host = base.split("://")[1]
    return tflow.tflow(req=http.Request.make(method, base + path, headers={"Host": host}))


def connect_flow(host="registry-1.docker.io"):
    request = http.Request.make("CONNECT", f"http://{host}:443/")
    request.authority = f"{host}:443"
    return tflow.tflow(req=request)


def add_fault(addon, **spec):
    addon.tctx.configure(addon, hub_faults=json.dumps([spec]))


def finish(addon, flow, status=200, body=b"", chunks=()):
    """Drive the response half of a flow the way mitmproxy does."""
    flow.response = http.Response.make(status, body)
    addon.responseheaders(flow)
    if flow.error:
        addon.error(flow)
        return
    for chunk in chunks:
        assert flow.response.stream(chunk) == chunk
    addon.response(flow)


@pytest.mark.parametrize(
    "option, value",
    [
        ("hub_routes", ""),
        ("hub_routes", ROUTES),
        ("hub_control", ""),
        ("hub_control", "127.0.0.1:0"),
        ("hub_control", "[::1]:5380"),
        ("hub_faults", ""),
        ("hub_faults", '[{"name": "down", "kind": "refuse"}]'),
        ("hub_faults", "- name: down\n  kind: reset\n"),
        ("hub_tap_capacity", 1),
    ],
)
def test_good_option_values_are_accepted(option, value):
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(hub, **{option: value})


@pytest.mark.parametrize(
    "option, value, problem",
    [
        ("hub_routes", "registry=127.0.0.1:5001", "http:// or https://"),
        ("hub_routes", "hub=http://127.0.0.1:1", "unknown role"),
        ("hub_control", "0.0.0.0:5380", "not loopback"),
        ("hub_control", "localhost:5380", "loopback IP"),
        ("hub_control", "127.0.0.1:http", "port"),
        ("hub_control", "5380", "HOST:PORT"),
        ("hub_faults", '[{"name": "down", "kind": "refuze"}]', "fault 1: kind"),
        ("hub_faults", '{"name": "down", "kind": "refuse"}', "not a readable file"),
        ("hub_faults", '[{"name": "a", "kind": "refuse"}, {"name": "a", "kind": "reset"}]', "duplicate"),
        ("hub_faults", "[unclosed", "not JSON/YAML"),
        ("hub_faults", "/nonexistent/faults.yaml", "not a readable file"),
        ("hub_tap_capacity", 0, "at least 1"),
    ],
)
def test_bad_option_values_raise_options_error_quoting_the_value(option, value, problem):
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        with pytest.raises(exceptions.OptionsError) as caught:
            tctx.configure(hub, **{option: value})
    assert repr(value) in str(caught.value)
    assert problem in str(caught.value)


def test_hub_faults_reads_a_file(tmp_path):
    path = tmp_path / "faults.yaml"
    path.write_text("- name: down\n  kind: refuse\n  match: {roles: [auth]}\n")
    assert [s.name for s in load_fault_specs(str(path))] == ["down"]


def test_registry_request_is_routed_keeping_its_host(addon):
    flow = request_flow("/v2/library/alpine/manifests/3")
    addon.requestheaders(flow)
    assert (flow.request.host, flow.request.port, flow.request.scheme) == ("127.0.0.1", 5001, "http")
    assert flow.request.host_header == "registry-1.docker.io"
    assert flow.request.headers["X-Forwarded-Proto"] == "https"


def test_auth_request_goes_to_its_own_upstream(addon):
    flow = request_flow("/token?scope=repository:library/a:pull", base="https://auth.docker.io")
    addon.requestheaders(flow)
    assert flow.request.port == 5002


def test_unrouted_role_passes_through_unchanged(addon):
    flow = request_flow("/blob", base="https://production.cloudflare.docker.com")
    addon.requestheaders(flow)
    assert (flow.request.host, flow.request.port) == ("production.cloudflare.docker.com", 443)


def test_live_mode_passes_everything_through():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(hub, hub_routes="")
        flow = request_flow()
        hub.requestheaders(flow)
    assert (flow.request.host, flow.request.port) == ("registry-1.docker.io", 443)
    assert "X-Forwarded-Proto" not in flow.request.headers


def test_flow_answered_by_another_addon_is_left_alone(addon):
    add_fault(addon, name="down", kind="refuse")
    flow = request_flow()
    flow.response = http.Response.make(204)
    addon.requestheaders(flow)
    assert flow.error is None and flow.request.port == 443


def test_streamed_body_bytes_are_counted_in_the_tap(addon):
    flow = request_flow("/v2/library/redis/blobs/sha256:" + "a" * 64)
    addon.requestheaders(flow)
    finish(addon, flow, chunks=[b"x" * 1000, b"y" * 24, b""])
    [event] = addon.tap.since(0).events
    assert event["bytes"] == 1024
    assert event["status"] == 200
    assert (event["role"], event["kind"], event["repository"]) == ("registry", "blob", "library/redis")
    assert event["host"] == "registry-1.docker.io"
    assert event["fault"] is None and event["error"] is None
    assert event["client"] == "127.0.0.1:22"
    assert event["latency_ms"] >= 0


def test_unstreamed_body_is_counted_too(addon):
    flow = request_flow()
    addon.requestheaders(flow)
    flow.response = http.Response.make(401, b"unauthorized")
    addon.response(flow)  # e.g. a HEAD or a response set by another addon
    assert addon.tap.since(0).events[0]["bytes"] == len(b"unauthorized")


def test_refuse_answers_new_tunnels_with_502_and_records_it(addon):
    add_fault(addon, name="down", kind="refuse")
    flow = connect_flow()
    addon.http_connect(flow)
    assert flow.response.status_code == 502
    addon.http_connect_error(flow)
    [event] = addon.tap.since(0).events
    assert (event["kind"], event["method"], event["status"], event["fault"]) == (
        "connect",
        "CONNECT",
        502,
        "down",
    )


def test_tunnels_open_when_no_fault_matches(addon):
    add_fault(addon, name="auth-down", kind="refuse", match={"roles": ["auth"]})
    flow = connect_flow()
    addon.http_connect(flow)
    assert flow.response is None
    assert addon.tap.since(0).events == []


def test_refuse_kills_requests_on_open_tunnels_without_routing_them(addon):
    add_fault(addon, name="down", kind="refuse")
    flow = request_flow()
    addon.requestheaders(flow)
    assert flow.error is not None
    assert flow.request.port == 443  # never sent anywhere
    addon.error(flow)
    [event] = addon.tap.since(0).events
    assert (event["status"], event["fault"], event["bytes"]) == (None, "down", 0)
    assert event["error"] == "Connection killed."


def test_fault_narrowed_to_manifests_spares_other_endpoints(addon):
    add_fault(addon, name="m", kind="refuse", match={"endpoints": ["manifest"]})
    ping, manifest = request_flow(), request_flow("/v2/library/a/manifests/1")
    addon.requestheaders(ping)
    addon.requestheaders(manifest)
    assert ping.error is None and manifest.error is not None


def test_reset_reaches_upstream_then_kills_before_the_response(addon):
    add_fault(addon, name="rst", kind="reset")
    flow = request_flow()
    addon.requestheaders(flow)
    assert flow.error is None and flow.request.port == 5001
    finish(addon, flow, body=b"never sent")
    [event] = addon.tap.since(0).events
    assert (event["status"], event["fault"], event["bytes"]) == (None, "rst", 0)


def test_tap_capacity_option_bounds_the_tap():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(hub, hub_tap_capacity=2, hub_routes="")
        for _ in range(3):
            flow = request_flow()
            hub.requestheaders(flow)
            finish(hub, flow)
    page = hub.tap.since(0)
    assert (page.dropped, len(page.events)) == (1, 2)


def test_without_faults_the_stream_is_the_bare_byte_counter(addon):
    flow = request_flow("/v2/library/a/blobs/sha256:" + "a" * 64)
    assert addon.requestheaders(flow) is None
    flow.response = http.Response.make(200, b"")
    addon.responseheaders(flow)
    assert type(flow.response.stream).__name__ == "ByteCounter"


def test_trigger_first_acts_on_the_first_matching_requests_only(addon):
    add_fault(addon, name="twice", kind="refuse", trigger={"first": 2})
    flows = [request_flow() for _ in range(3)]
    for flow in flows:
        addon.requestheaders(flow)
    assert [f.error is not None for f in flows] == [True, True, False]
    [listed] = addon.faults.specs()
    assert listed.counters.to_dict() == {"matched": 3, "fired": 2, "applied": 2}


def test_faults_can_target_one_client_address(addon):
    add_fault(addon, name="one", kind="refuse", match={"clients": ["127.0.0.2"]})
    other, targeted = request_flow(), request_flow()
    targeted.client_conn.peername = ("127.0.0.2", 40000)
    addon.requestheaders(other)
    addon.requestheaders(targeted)
    assert other.error is None and targeted.error is not None


def test_waiting_faults_make_requestheaders_return_an_awaitable(addon):
    add_fault(addon, name="slow", kind="latency", params={"delay_ms": 20})
    flow = request_flow("/v2/library/a/manifests/1")
    pending = addon.requestheaders(flow)
    assert flow.request.port == 5001  # routed before the wait
    asyncio.run(pending)
    assert flow.error is None
    finish(addon, flow)
    [event] = addon.tap.since(0).events
    assert event["fault"] == "slow"


def test_body_filters_run_in_fault_order_and_the_tap_counts_what_the_client_got(addon):
    addon.tctx.configure(addon, hub_faults=json.dumps([
        {"name": "rot", "kind": "corrupt", "params": {"at_byte": 0}},
        {"name": "cut", "kind": "truncate", "params": {"after_bytes": 3}},
    ]))  # fmt: skip
    flow = request_flow("/v2/library/a/blobs/sha256:" + "a" * 64)
    addon.requestheaders(flow)
    flow.response = http.Response.make(200, b"")
    flow.response.headers["Content-Length"] = "6"
    addon.responseheaders(flow)
    sent = flow.response.stream(b"\x00" * 6) + flow.response.stream(b"")
    assert sent == b"\xff\x00\x00"  # corrupted first, then cut
    pending = addon.response(flow)
    assert pending is not None and not addon.tap.since(0).events  # recorded after the cut
    asyncio.run(pending)
    [event] = addon.tap.since(0).events
    assert (event["status"], event["bytes"], event["fault"]) == (None, 3, "rot,cut")
    assert event["error"] == "Connection killed."


def test_requests_are_in_flight_until_recorded():
    from mitmproxy.test import taddons, tflow

    from chaos.proxy.addon import HubChaos

    addon = HubChaos()
    with taddons.context(addon):
        flow = tflow.tflow()
        flow.request.host = "registry-1.docker.io"
        flow.request.path = "/v2/library/alpine/manifests/3.19"
        flow.response = None
        addon.requestheaders(flow)
        assert addon.in_flight == {flow.id}
        flow.response = tflow.tresp()
        addon.response(flow)
        assert addon.in_flight == set()
        assert addon.tap.last_id == 1
