import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.proxy.routing import Upstream, apply_route, parse_routes, parse_upstream


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", {}),
        ("registry=http://127.0.0.1:5001", {"registry": Upstream("http", "127.0.0.1", 5001)}),
        (
            " registry = http://127.0.0.1:5001/ , auth=https://localhost:5002,cdn=http://[::1]:5003",
            {
                "registry": Upstream("http", "127.0.0.1", 5001),
                "auth": Upstream("https", "localhost", 5002),
                "cdn": Upstream("http", "::1", 5003),
            },
        ),
    ],
)
def test_parse_routes_accepts(text, expected):
    assert dict(parse_routes(text)) == expected


@pytest.mark.parametrize(
    "text, problem",
    [
        ("registry", "ROLE=URL"),
        ("hub=http://127.0.0.1:1", "unknown role 'hub'"),
        ("registry=http://127.0.0.1:1,registry=http://127.0.0.1:2", "routed twice"),
        ("registry=http://127.0.0.1:1,", "empty route"),
        ("registry=ftp://127.0.0.1:1", "http:// or https://"),
        ("registry=127.0.0.1:5001", "http:// or https://"),
        ("registry=http://127.0.0.1", "explicit port"),
        ("registry=http://127.0.0.1:0", "explicit port"),
        ("registry=http://127.0.0.1:99999", "out of range"),
        ("registry=http://:5001", "no host"),
        ("registry=http://127.0.0.1:5001/v2", "scheme://host:port only"),
        ("registry=http://u:p@127.0.0.1:5001", "scheme://host:port only"),
    ],
)
def test_parse_routes_rejects(text, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        parse_routes(text)


def test_upstream_renders_as_base_url():
    assert str(parse_upstream("http://127.0.0.1:5001")) == "http://127.0.0.1:5001"


def test_apply_route_keeps_host_header_and_marks_https():
    request = http.Request.make(
        "GET",
        "https://registry-1.docker.io/v2/library/alpine/manifests/3",
        headers={"Host": "registry-1.docker.io"},
    )
    flow = tflow.tflow(req=request)
    apply_route(flow, Upstream("http", "127.0.0.1", 5001))
    assert (request.scheme, request.host, request.port) == ("http", "127.0.0.1", 5001)
    assert request.headers["Host"] == "registry-1.docker.io"
    assert request.headers["X-Forwarded-Proto"] == "https"
    assert request.path == "/v2/library/alpine/manifests/3"


def test_apply_route_keeps_http2_authority():
    request = http.Request.make("GET", "https://auth.docker.io/token")
    request.http_version = "HTTP/2.0"
    request.authority = "auth.docker.io"
    flow = tflow.tflow(req=request)
    apply_route(flow, Upstream("http", "127.0.0.1", 5002))
    assert request.host_header == "auth.docker.io"
    assert "Host" not in request.headers
    assert (request.host, request.port) == ("127.0.0.1", 5002)
