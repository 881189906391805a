import pytest
from mitmproxy.test import tflow

from chaos.proxy.origins import NAMED_ORIGINS, origin_of, parse_origins


def test_named_origins_are_the_vocabulary_less_unknown():
    assert NAMED_ORIGINS == ("mirror", "client", "push-registry")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", {}),
        ("  ", {}),
        ("mirror=8081", {8081: "mirror"}),
        ("mirror=8081, client=8082 ,push-registry=8083", {8081: "mirror", 8082: "client", 8083: "push-registry"}),
    ],
)
def test_parse_origins(text, expected):
    assert dict(parse_origins(text)) == expected


@pytest.mark.parametrize(
    "text, problem",
    [
        ("mirror", "is not ORIGIN=PORT"),
        ("=8081", "is not ORIGIN=PORT"),
        ("mirror=8081,", "is not ORIGIN=PORT"),
        ("seeder=8081", "unknown origin 'seeder' (expected one of: mirror, client, push-registry)"),
        ("unknown=8081", "unknown origin 'unknown'"),
        ("mirror=http", "port 'http' of mirror must be a number from 1 to 65535"),
        ("mirror=0", "from 1 to 65535"),
        ("mirror=70000", "from 1 to 65535"),
        ("mirror=8081,client=8081", "port 8081 given to both mirror and client"),
        ("mirror=8081,mirror=8082", "origin mirror given twice"),
    ],
)
def test_bad_origins_say_which_item(text, problem):
    with pytest.raises(ValueError) as caught:
        parse_origins(text)
    assert problem in str(caught.value)


def test_the_listener_port_names_the_origin():
    origins = parse_origins("mirror=8081,client=8082")
    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", 8082)
    assert origin_of(flow, origins) == "client"
    flow.client_conn.sockname = ("127.0.0.1", 9999)
    assert origin_of(flow, origins) == "unknown"
    flow.client_conn.sockname = ("", 0)
    assert origin_of(flow, origins) == "unknown"
