import asyncio
import time

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.faults.kinds.stall import Stall
from chaos.faults.lifetime import Lifetime
from chaos.faults.spec import FaultSpecError, parse_fault_spec


def response_flow(method="GET"):
    flow = tflow.tflow(req=http.Request.make(method, "https://registry-1.docker.io/v2/a/blobs/x"))
    flow.response = http.Response.make(200, b"x" * 100)
    return flow


@pytest.mark.parametrize(
    "params, expected",
    [(None, Stall.Params()), ({"after_bytes": 10, "stall_ms": 500}, Stall.Params(10, 500))],
)
def test_good_params(params, expected):
    assert parse_fault_spec({"name": "s", "kind": "stall", "params": params}).params == expected


@pytest.mark.parametrize(
    "params, field",
    [({"stall_ms": -1}, "params.stall_ms"), ({"after_bytes": 0.5}, "params.after_bytes"), ({"ms": 1}, "params.ms")],
)
def test_bad_params_name_the_field(params, field):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec({"name": "s", "kind": "stall", "params": params})
    assert caught.value.field == field


def test_passes_after_bytes_then_drops_the_rest():
    body = Stall(Stall.Params(after_bytes=3)).body_filter(response_flow())
    assert body(b"ab") + body(b"cd") + body(b"ef") == b"abc"


def test_holds_until_stall_ms_then_kills():
    flow = response_flow()
    body = Stall(Stall.Params(stall_ms=50)).body_filter(flow)
    life = Lifetime(time.time() + 60, time.time)
    started = time.monotonic()
    asyncio.run(body.finish(flow, life))
    assert time.monotonic() - started >= 0.05
    assert flow.error.msg == "Connection killed."


def test_holds_until_the_fault_is_removed_when_no_stall_ms():
    flow = response_flow()
    body = Stall(Stall.Params()).body_filter(flow)
    life = Lifetime(time.time() + 60, time.time)

    async def scenario():
        holding = asyncio.create_task(body.finish(flow, life))
        await asyncio.sleep(0.05)
        assert not holding.done() and flow.error is None
        life.end()
        await asyncio.wait_for(holding, 5)

    asyncio.run(scenario())
    assert flow.error.msg == "Connection killed."


def test_head_is_left_alone():
    assert Stall(Stall.Params()).body_filter(response_flow(method="HEAD")) is None
