import asyncio

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.faults.kinds.truncate import Truncate
from chaos.faults.spec import FaultSpecError, parse_fault_spec


def response_flow(length=100, method="GET", headers=None):
    flow = tflow.tflow(req=http.Request.make(method, "https://registry-1.docker.io/v2/a/blobs/x"))
    flow.response = http.Response.make(200)
    flow.response.headers.clear()
    flow.response.headers.update(headers or {"Content-Length": str(length)})
    return flow


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"after_bytes": 0}, Truncate.Params(after_bytes=0)),
        ({"after_bytes": 1000}, Truncate.Params(after_bytes=1000)),
        ({"fraction": 0.5}, Truncate.Params(fraction=0.5)),
        ({"fraction": 0}, Truncate.Params(fraction=0.0)),
    ],
)
def test_good_params(params, expected):
    assert parse_fault_spec({"name": "t", "kind": "truncate", "params": params}).params == expected


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "params.after_bytes"),
        ({"after_bytes": 1, "fraction": 0.5}, "params.after_bytes"),
        ({"fraction": 1}, "params.fraction"),
        ({"fraction": 1.5}, "params.fraction"),
        ({"fraction": -0.5}, "params.fraction"),
        ({"after_bytes": -1}, "params.after_bytes"),
        ({"after_bytes": "10"}, "params.after_bytes"),
    ],
)
def test_bad_params_name_the_field(params, field):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec({"name": "t", "kind": "truncate", "params": params})
    assert caught.value.field == field


def test_after_bytes_keeps_the_first_bytes_then_kills_at_the_end():
    flow = response_flow()
    body = Truncate(Truncate.Params(after_bytes=5)).body_filter(flow)
    assert body(b"abc") + body(b"defg") + body(b"hij") + body(b"") == b"abcde"
    assert flow.error is None  # headers and those bytes go out first
    asyncio.run(body.finish(flow, None))
    assert flow.error.msg == "Connection killed."


def test_fraction_is_of_content_length():
    body = Truncate(Truncate.Params(fraction=0.25)).body_filter(response_flow(length=100))
    assert len(body(b"x" * 100)) == 25


def test_fraction_without_content_length_leaves_the_body_alone():
    flow = response_flow(headers={"Transfer-Encoding": "chunked"})
    assert Truncate(Truncate.Params(fraction=0.5)).body_filter(flow) is None


@pytest.mark.parametrize("method, length", [("HEAD", 100), ("GET", 0)])
def test_responses_without_body_are_left_alone(method, length):
    flow = response_flow(length=length, method=method)
    assert Truncate(Truncate.Params(after_bytes=1)).body_filter(flow) is None
