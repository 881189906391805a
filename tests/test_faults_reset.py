from mitmproxy.test import tflow

from chaos.faults.reset import Reset


def test_request_is_let_through_to_upstream():
    flow = tflow.tflow()
    assert Reset(None).on_connect(flow) is False
    assert Reset(None).on_request(flow) is False
    assert flow.error is None and flow.response is None


def test_connection_dies_once_upstream_answered():
    flow = tflow.tflow(resp=True)
    assert Reset(None).on_response_headers(flow) is True
    assert flow.error.msg == "Connection killed."
