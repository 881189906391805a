import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.faults.body import BodyFilter, CutAfter, content_length, has_body


def response_flow(method="GET", status=200, headers=()):
    flow = tflow.tflow(req=http.Request.make(method, "https://registry-1.docker.io/v2/"))
    flow.response = http.Response.make(status, b"", dict(headers))
    flow.response.headers.pop("content-length", None)
    for name, value in headers:
        flow.response.headers[name] = value
    return flow


def test_cut_after_keeps_the_first_bytes_across_chunks_and_drops_the_rest():
    cut = CutAfter(5)
    assert [cut(b"abc"), cut(b"defg"), cut(b"hij"), cut(b"")] == [b"abc", b"de", b"", b""]


def test_the_base_body_filter_passes_bytes_through_and_ends_nothing():
    step = BodyFilter()
    assert step(b"abc") == b"abc"
    assert step.ends_response is False


@pytest.mark.parametrize(
    "method, status, headers, expected",
    [
        ("GET", 200, [("content-length", "10")], True),
        ("GET", 200, [], True),  # streamed without a length
        ("HEAD", 200, [("content-length", "10")], False),
        ("GET", 204, [], False),
        ("GET", 304, [], False),
        ("GET", 101, [], False),
        ("GET", 200, [("content-length", " 0 ")], False),
    ],
)
def test_has_body(method, status, headers, expected):
    assert has_body(response_flow(method, status, headers)) is expected


@pytest.mark.parametrize(
    "headers, expected",
    [([("content-length", "1234")], 1234), ([], None), ([("content-length", "12a")], None)],
)
def test_content_length_is_none_when_absent_or_malformed(headers, expected):
    assert content_length(response_flow(headers=headers)) == expected


def test_cut_after_released_before_cutting_lets_the_rest_through_and_ends_nothing():
    class Cut(CutAfter):
        cuts = True

    cut = Cut(5)
    assert cut(b"abc") == b"abc" and cut.ends_response and not cut.acted
    cut.release()
    assert cut(b"defgh") + cut(b"ij") + cut(b"") == b"defghij"
    assert not cut.ends_response and not cut.acted


def test_cut_after_released_after_cutting_still_ends_the_response():
    class Cut(CutAfter):
        cuts = True

    cut = Cut(2)
    assert cut(b"abc") == b"ab" and cut.acted
    cut.release()
    assert cut(b"def") == b"" and cut.ends_response  # the body is broken already: end it
