import hashlib

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.faults.kinds.corrupt import Corrupt, FlipBytes
from chaos.faults.spec import FaultSpecError, parse_fault_spec


def response_flow(length=10, method="GET", headers=None):
    flow = tflow.tflow(req=http.Request.make(method, "https://registry-1.docker.io/v2/a/blobs/x"))
    flow.response = http.Response.make(200)
    flow.response.headers.clear()
    flow.response.headers.update(headers or {"Content-Length": str(length)})
    return flow


def stream(body_filter, body, size):
    return b"".join(body_filter(body[i : i + size]) for i in range(0, len(body), size)) + body_filter(b"")


@pytest.mark.parametrize(
    "params, expected",
    [
        (None, Corrupt.Params()),
        ({"at_byte": 0}, Corrupt.Params(at_byte=0)),
        ({"at_byte": 3, "every_bytes": 2}, Corrupt.Params(at_byte=3, every_bytes=2)),
    ],
)
def test_good_params(params, expected):
    assert parse_fault_spec({"name": "c", "kind": "corrupt", "params": params}).params == expected


@pytest.mark.parametrize(
    "params, field",
    [({"at_byte": -1}, "params.at_byte"), ({"every_bytes": 0}, "params.every_bytes"), ({"offset": 1}, "params.offset")],
)
def test_bad_params_name_the_field(params, field):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec({"name": "c", "kind": "corrupt", "params": params})
    assert caught.value.field == field


def test_flips_the_middle_byte_by_default_keeping_the_length():
    body = bytes(range(10))
    corrupted = stream(Corrupt(Corrupt.Params()).body_filter(response_flow(10)), body, 3)
    assert len(corrupted) == 10
    assert [i for i in range(10) if corrupted[i] != body[i]] == [5]
    assert hashlib.sha256(corrupted).digest() != hashlib.sha256(body).digest()


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
def test_flips_the_same_bytes_however_the_body_is_chunked(chunk_size):
    body = bytes(100)
    corrupted = stream(FlipBytes(first=2, every=25), body, chunk_size)
    assert [i for i in range(100) if corrupted[i]] == [2, 27, 52, 77]
    assert corrupted[2] == 0xFF


def test_without_content_length_the_first_byte_flips():
    flow = response_flow(headers={"Transfer-Encoding": "chunked"})
    assert stream(Corrupt(Corrupt.Params()).body_filter(flow), b"\x00\x00", 1) == b"\xff\x00"


def test_offsets_past_the_body_or_no_body_mean_the_fault_does_not_act():
    assert Corrupt(Corrupt.Params(at_byte=10)).body_filter(response_flow(10)) is None
    assert Corrupt(Corrupt.Params()).body_filter(response_flow(10, method="HEAD")) is None


def test_released_it_flips_no_more_and_says_whether_it_had():
    flips = FlipBytes(first=2, every=4)
    assert not flips.acted
    assert flips(b"\x00" * 4) == b"\x00\x00\xff\x00" and flips.acted
    flips.release()
    assert flips(b"\x00" * 8) == b"\x00" * 8
    unflipped = FlipBytes(first=50, every=None)
    unflipped(b"\x00" * 10)
    unflipped.release()
    assert not unflipped.acted and unflipped(b"\x00" * 100) == b"\x00" * 100
