from mitmproxy.test import taddons, tflow

from chaos.faults.transports import client_socket, reset_on_close, server_transport


def test_outside_a_running_proxy_there_is_nothing_to_reach():
    flow = tflow.tflow(resp=True)
    with taddons.context():
        assert server_transport(flow) is None
        assert client_socket(flow) is None
        assert reset_on_close(flow) is False


def test_http2_clients_are_never_reset_as_a_whole():
    flow = tflow.tflow(resp=True)
    flow.client_conn.alpn = b"h2"
    with taddons.context():
        assert reset_on_close(flow) is False
