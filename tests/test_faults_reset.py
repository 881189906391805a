import asyncio

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from chaos.faults.kinds.reset import Reset
from chaos.faults.spec import FaultSpecError, parse_fault_spec


def blob_flow(body=b"x" * 100, method="GET"):
    flow = tflow.tflow(req=http.Request.make(method, "https://registry-1.docker.io/v2/a/blobs/x"))
    flow.response = http.Response.make(200, body)
    return flow


@pytest.mark.parametrize("params, expected", [(None, 0), ({}, 0), ({"after_bytes": 10}, 10)])
def test_good_params(params, expected):
    spec = parse_fault_spec({"name": "r", "kind": "reset", "params": params})
    assert spec.params == Reset.Params(after_bytes=expected)


@pytest.mark.parametrize(
    "params, field",
    [({"after_bytes": -1}, "params.after_bytes"), ({"after_bytes": 1.5}, "params.after_bytes"), ({"bytes": 1}, "params.bytes")],
)
def test_bad_params_name_the_field(params, field):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec({"name": "r", "kind": "reset", "params": params})
    assert caught.value.field == field


def test_request_is_let_through_to_upstream():
    flow = tflow.tflow()
    kind = Reset(Reset.Params())
    assert kind.on_connect(flow) is False and kind.on_request(flow) is False
    assert flow.error is None and flow.response is None


def test_by_default_the_connection_dies_before_any_response_byte():
    flow = blob_flow()
    with taddons.context():  # no proxy server to reach: the kill alone still happens
        assert Reset(Reset.Params()).on_response_headers(flow) is True
    assert flow.error.msg == "Connection killed."


def test_after_bytes_lets_that_much_body_through_then_kills():
    flow = blob_flow()
    kind = Reset(Reset.Params(after_bytes=10))
    assert kind.on_response_headers(flow) is False
    body = kind.body_filter(flow)
    assert body(b"a" * 6) + body(b"b" * 6) + body(b"c") + body(b"") == b"aaaaaabbbb"
    assert body.ends_response
    with taddons.context():
        asyncio.run(body.finish(flow, None))
    assert flow.error.msg == "Connection killed."


@pytest.mark.parametrize("method, body", [("HEAD", b"x" * 100), ("GET", b"")])
def test_with_after_bytes_a_response_without_body_is_left_alone(method, body):
    # Like every body kind (docs/faults.md): after_bytes counts body bytes.
    flow = blob_flow(body=body, method=method)
    kind = Reset(Reset.Params(after_bytes=10))
    with taddons.context():
        assert kind.on_response_headers(flow) is False
        assert kind.body_filter(flow) is None
    assert flow.error is None


def test_without_after_bytes_a_head_is_reset_too():
    flow = blob_flow(method="HEAD")
    with taddons.context():
        assert Reset(Reset.Params()).on_response_headers(flow) is True
    assert flow.error is not None
