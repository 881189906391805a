from mitmproxy import http
from mitmproxy.test import tflow

from chaos.faults.kinds.refuse import Refuse


def connect_flow():
    request = http.Request.make("CONNECT", "http://registry-1.docker.io:443/")
    request.authority = "registry-1.docker.io:443"
    return tflow.tflow(req=request)


def test_new_tunnel_is_answered_502_and_closed():
    flow = connect_flow()
    assert Refuse(None).on_connect(flow) is True
    assert flow.response.status_code == 502
    assert flow.response.headers["Connection"] == "close"
    assert b"registry-1.docker.io" in flow.response.content


def test_request_on_open_connection_is_killed_before_any_byte():
    flow = tflow.tflow()
    assert Refuse(None).on_request(flow) is True
    assert flow.error.msg == "Connection killed."
    assert flow.response is None


def test_refuse_leaves_responses_alone():
    flow = tflow.tflow(resp=True)
    assert Refuse(None).on_response_headers(flow) is False
    assert flow.error is None
