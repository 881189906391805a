from mitmproxy.test import tflow

from chaos.faults.kind import FaultKind, NoParams


class _Connects(FaultKind):
    name = "test-connects"

    def on_connect(self, flow):
        return True


def test_a_kind_acts_on_connects_only_when_it_defines_on_connect():
    assert _Connects(None).acts_on_connect is True
    assert FaultKind(None).acts_on_connect is False


def test_hooks_a_kind_does_not_define_leave_the_flow_alone():
    kind = FaultKind(NoParams())
    flow = tflow.tflow(resp=True)
    assert not kind.on_connect(flow) and not kind.on_request(flow) and not kind.on_response_headers(flow)
    assert kind.body_filter(flow) is None and kind.hold_request is None
    assert flow.error is None
    assert FaultKind.Params is NoParams
