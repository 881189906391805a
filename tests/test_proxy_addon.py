import asyncio
import json
import logging

import pytest
from mitmproxy import exceptions, http
from mitmproxy.log import ALERT
from mitmproxy.test import taddons, tflow

from chaos.errors import quoted
from chaos.proxy.addon import HubChaos, load_fault_specs
from chaos.proxy.reporting import HubOptionsError

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
    """Drive the response half of a flow the way mitmproxy does (with chunks:
    a streamed body of unknown length)."""
    flow.response = http.Response.make(status, body)
    if chunks:
        del flow.response.headers["content-length"]
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
        ("hub_origins", ""),
        ("hub_origins", "client=8080"),  # the default listener
        ("hub_allow_any_host", True),
        ("hub_allow_hosts", "*.r2.example.com,mirror.local"),
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
        ("hub_control", "0.0.0.0:5380", "set hub_control_token_file"),
        ("hub_control_token_file", "/nonexistent/token", "cannot read it"),
        ("hub_origins", "seeder=8080", "unknown origin 'seeder'"),
        ("hub_origins", "mirror=8081", "port 8081 of mirror is not a listener of this proxy (listening on: 8080"),
        ("hub_origins", "mirror", "is not ORIGIN=PORT"),
        ("hub_allow_hosts", "example.com:443", "bad host glob"),
        ("hub_faults", '[{"name": "a", "kind": "refuse", "ttl_s": 1' + "0" * 400 + '}]', "ttl_s: must be at most"),
        ("hub_faults", "[" * 10_000 + "]" * 10_000, "not a fault list"),
    ],
)
def test_bad_option_values_raise_options_error_quoting_the_value(option, value, problem):
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        with pytest.raises(exceptions.OptionsError) as caught:
            tctx.configure(hub, **{option: value})
    inline_faults = option == "hub_faults" and value.startswith(("[", "-", "{"))
    # A fault list written inline may hold a scenario's words: its length, never its text.
    assert (f"(inline, {len(value)} characters)" if inline_faults else quoted(value, 200)) in str(caught.value)
    assert problem in str(caught.value)
    error = caught.value  # one message, no chained traceback (mitmdump prints it in one line)
    assert isinstance(error, HubOptionsError)
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize("value", [
    '[{"name": "t", "kind": "http", "params": {"status": 418, "message": "hunter2-pw"}, "ttl_s": -1}]',
    '[{"name": "t", "kind": "http", "params": {"status": 418, "message": "hunter2-pw"}} oops',
    '{"name": "t", "kind": "http", "params": {"status": 418, "message": "hunter2-pw"}}',  # one line: not a list
])  # fmt: skip
def test_a_bad_inline_fault_list_is_refused_without_echoing_its_words(value):
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        with pytest.raises(exceptions.OptionsError) as caught:
            tctx.configure(hub, hub_faults=value)
    assert "hunter2" not in str(caught.value) and "hub_faults" in str(caught.value)


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
    flow.response.headers["Content-Length"] = str(10 * 1024 * 1024)  # a blob, on its way
    addon.responseheaders(flow)
    assert type(flow.response.stream).__name__ == "ByteCounter"


def test_a_small_answer_without_body_faults_is_read_whole_and_counted(addon):
    flow = request_flow("/v2/library/a/manifests/1")
    addon.requestheaders(flow)
    flow.response = http.Response.make(200, b"{}" * 100)
    addon.responseheaders(flow)
    assert not flow.response.stream  # mitmproxy reads it whole: no per-chunk call
    addon.response(flow)
    [event] = addon.tap.since(0).events
    assert (event["status"], event["bytes"]) == (200, 200)


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
        assert list(addon.in_flight) == [flow.id]
        [held] = addon.requests_held()
        assert (held["method"], held["kind"], held["repository"], held["faults"]) == ("GET", "manifest", "library/alpine", [])
        flow.response = tflow.tresp()
        addon.response(flow)
        assert addon.in_flight == {} and addon.requests_held() == []
        assert addon.tap.last_id == 1


TOKEN = "a-token-of-32-characters-0123456"


def test_a_token_file_lets_the_control_api_serve_beyond_loopback(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(hub, hub_control="0.0.0.0:5380", hub_control_token_file=str(token_file))
        assert hub.control_token == TOKEN.encode()
        # Dropping the token while the address is not loopback would open the API: refused.
        with pytest.raises(exceptions.OptionsError, match="set hub_control_token_file"):
            tctx.configure(hub, hub_control_token_file="")
        assert hub.control_token == TOKEN.encode()


def test_a_short_token_file_is_refused_without_showing_the_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tiny-secret")
    hub = HubChaos()
    with taddons.context(hub) as tctx, pytest.raises(exceptions.OptionsError) as caught:
        tctx.configure(hub, hub_control_token_file=str(token_file))
    assert "at least 16" in str(caught.value) and "tiny-secret" not in str(caught.value)


def test_events_carry_the_origin_of_their_listener_and_their_end_time():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(hub, mode=["regular@8081", "regular@8082"], hub_origins="mirror=8081,client=8082")
        for port in (8081, 8082, 8083):
            flow = request_flow()
            flow.client_conn.sockname = ("127.0.0.1", port)
            hub.requestheaders(flow)
            finish(hub, flow)
    events = hub.tap.since(0).events
    assert [e["origin"] for e in events] == ["mirror", "client", "unknown"]
    for event in events:
        assert event["ts"] <= event["ts_end"]
        assert event["latency_ms"] == pytest.approx((event["ts_end"] - event["ts"]) * 1000, abs=0.01)


def test_faults_can_target_one_origin():
    hub = HubChaos()
    with taddons.context(hub) as tctx:
        tctx.configure(hub, mode=["regular@8081", "regular@8082"], hub_origins="mirror=8081,client=8082",
                       hub_faults=json.dumps([{"name": "m", "kind": "refuse", "match": {"origins": ["mirror"]}}]))  # fmt: skip
        mirror, client = request_flow(), request_flow()
        mirror.client_conn.sockname = ("127.0.0.1", 8081)
        client.client_conn.sockname = ("127.0.0.1", 8082)
        hub.requestheaders(mirror)
        hub.requestheaders(client)
    assert mirror.error is not None and client.error is None


@pytest.mark.parametrize("connect", [True, False])
def test_hosts_other_than_hubs_get_403_and_no_event(addon, connect, caplog):
    caplog.set_level(logging.WARNING, logger="chaos.proxy.addon")
    for _ in range(2):
        flow = connect_flow("example.com") if connect else request_flow("/", base="http://example.com")
        (addon.http_connect if connect else addon.requestheaders)(flow)
        assert flow.response.status_code == 403
        assert b"example.com is not a Docker Hub host" in flow.response.content
        assert flow.request.port in (443, 80)  # never routed
    assert addon.tap.since(0).events == [] and addon.in_flight == {}
    [line] = [r.getMessage() for r in caplog.records]  # once per host
    assert line.startswith(f"hub-chaos: refused {'CONNECT' if connect else 'GET'} for 'example.com' from 127.0.0.1")
    assert "hub_chaos_refused_host_requests_total 2.0" in addon.metrics.render(None)[0].decode()


def test_allowed_hosts_and_any_host_pass(addon):
    addon.tctx.configure(addon, hub_allow_hosts="*.example.com")
    flow = connect_flow("blobs.example.com")
    addon.http_connect(flow)
    assert flow.response is None
    addon.tctx.configure(addon, hub_allow_hosts="", hub_allow_any_host=True)
    flow = request_flow("/", base="http://example.com")
    addon.requestheaders(flow)
    assert flow.response is None and addon.tap.since(0).events == []


def test_faults_switched_on_and_off_are_logged(addon, caplog):
    caplog.set_level(ALERT, logger="chaos.proxy.addon")
    add_fault(addon, name="down", kind="refuse", match={"roles": ["auth"]})
    addon.faults.remove("down")
    lines = [r.getMessage() for r in caplog.records if r.levelno == ALERT]
    assert lines[0].startswith("hub-chaos: fault on: down (refuse) match roles=auth, expires in ")
    assert lines[1] == "hub-chaos: fault off (removed): down (refuse)"


def test_a_body_fault_removed_before_it_acted_lets_the_body_through_and_is_not_counted(addon):
    add_fault(addon, name="cut", kind="truncate", params={"after_bytes": 10})
    flow = request_flow("/v2/library/a/blobs/sha256:" + "a" * 64)
    addon.requestheaders(flow)
    flow.response = http.Response.make(200, b"")
    flow.response.headers["Content-Length"] = "30"
    addon.responseheaders(flow)
    sent = flow.response.stream(b"x" * 5)
    addon.faults.remove("cut")
    sent += flow.response.stream(b"y" * 25) + flow.response.stream(b"")
    assert sent == b"x" * 5 + b"y" * 25
    assert addon.response(flow) is None  # nothing left to cut: recorded at once
    [event] = addon.tap.since(0).events
    assert (event["status"], event["bytes"], event["fault"]) == (200, 30, None)


def test_another_addons_stream_runs_before_the_counter(addon):
    flow = request_flow("/v2/library/a/blobs/sha256:" + "a" * 64)
    addon.requestheaders(flow)
    flow.response = http.Response.make(307, b"")
    flow.response.stream = lambda chunk: b""  # CdnRedirect swallowing its probe's byte
    addon.responseheaders(flow)
    assert flow.response.stream(b"\x1f") == b""
    addon.response(flow)
    assert addon.tap.since(0).events[0]["bytes"] == 0


def test_metrics_count_what_the_tap_records(addon):
    add_fault(addon, name="rst", kind="reset")
    flow = request_flow("/v2/library/a/manifests/1")
    addon.requestheaders(flow)
    finish(addon, flow)
    text = addon.metrics.render(None)[0].decode()
    labels = 'fault="rst",fault_kind="reset",kind="manifest",origin="unknown",role="registry"'
    assert f"hub_chaos_faults_fired_total{{{labels}}} 1.0" in text
    assert f"hub_chaos_faults_applied_total{{{labels}}} 1.0" in text
