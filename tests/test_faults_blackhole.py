import asyncio
import time

import pytest
from mitmproxy import connection
from mitmproxy.test import tflow

from chaos.faults.kinds.blackhole import Blackhole
from chaos.faults.lifetime import Lifetime
from chaos.faults.spec import FaultSpecError, parse_fault_spec


def test_takes_no_params():
    assert parse_fault_spec({"name": "b", "kind": "blackhole"}).kind == "blackhole"
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec({"name": "b", "kind": "blackhole", "params": {"timeout_ms": 1}})
    assert caught.value.field == "params.timeout_ms"


def test_holds_until_removed_then_kills_without_answering():
    flow = tflow.tflow()
    life = Lifetime(time.time() + 60, time.time)

    async def scenario():
        holding = asyncio.create_task(Blackhole(None).hold_request(flow, life))
        await asyncio.sleep(0.05)
        assert not holding.done()
        life.end()
        return await asyncio.wait_for(holding, 5)

    assert asyncio.run(scenario()) is True
    assert flow.response is None and flow.error.msg == "Connection killed."


def test_expiry_releases_the_hold():
    flow = tflow.tflow()
    started = time.monotonic()
    asyncio.run(Blackhole(None).hold_request(flow, Lifetime(time.time() + 0.1, time.time)))
    assert 0.05 <= time.monotonic() - started < 5
    assert flow.error is not None


def test_a_client_that_went_away_ends_the_hold():
    flow = tflow.tflow()
    flow.client_conn.state = connection.ConnectionState.CLOSED
    started = time.monotonic()
    asyncio.run(Blackhole(None).hold_request(flow, Lifetime(time.time() + 60, time.time)))
    assert time.monotonic() - started < 5
