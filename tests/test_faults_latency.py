import asyncio
import time

import pytest
from mitmproxy.test import tflow

from chaos.faults.kinds.latency import Latency
from chaos.faults.lifetime import Lifetime
from chaos.faults.spec import FaultSpecError, parse_fault_spec


@pytest.mark.parametrize(
    "params, expected",
    [({"delay_ms": 200}, Latency.Params(200, 0)), ({"delay_ms": 0, "jitter_ms": 50}, Latency.Params(0, 50))],
)
def test_good_params(params, expected):
    assert parse_fault_spec({"name": "l", "kind": "latency", "params": params}).params == expected


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "params.delay_ms"),
        ({"delay_ms": -1}, "params.delay_ms"),
        ({"delay_ms": 1, "jitter_ms": -5}, "params.jitter_ms"),
        ({"delay": 1}, "params.delay"),
    ],
)
def test_bad_params_name_the_field(params, field):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec({"name": "l", "kind": "latency", "params": params})
    assert caught.value.field == field


def hold(kind, life=None):
    flow = tflow.tflow()
    life = life or Lifetime(time.time() + 60, time.time)
    started = time.monotonic()
    assert asyncio.run(kind.hold_request(flow, life)) is True
    assert flow.error is None and flow.response is None  # the request then goes on
    return time.monotonic() - started


def test_delays_by_at_least_delay_ms_and_at_most_delay_plus_jitter():
    elapsed = [hold(Latency(Latency.Params(delay_ms=30, jitter_ms=20))) for _ in range(3)]
    assert all(0.03 <= e < 1.0 for e in elapsed)


def test_removing_the_fault_releases_the_wait():
    life = Lifetime(time.time() + 60, time.time)
    life.end()
    assert hold(Latency(Latency.Params(delay_ms=10_000)), life) < 1.0
