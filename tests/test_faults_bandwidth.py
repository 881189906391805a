import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from chaos.faults.kinds.bandwidth import Bandwidth
from chaos.faults.spec import FaultSpecError, parse_fault_spec


@pytest.mark.parametrize("rate, expected", [(500, 500.0), (1, 1.0), (2.5, 2.5), (50_000, 50_000.0)])
def test_good_params(rate, expected):
    spec = parse_fault_spec({"name": "b", "kind": "bandwidth", "params": {"rate_kbps": rate}})
    assert spec.params.rate_kbps == expected


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "params.rate_kbps"),
        ({"rate_kbps": 0}, "params.rate_kbps"),
        ({"rate_kbps": 0.999}, "params.rate_kbps"),  # below the floor: 1000 bytes/s
        ({"rate_kbps": 1e-300}, "params.rate_kbps"),
        ({"rate_kbps": 10**400}, "params.rate_kbps"),
        ({"rate_kbps": -1}, "params.rate_kbps"),
        ({"rate_kbps": "1m"}, "params.rate_kbps"),
        ({"rate": 5}, "params.rate"),
    ],
)
def test_bad_params_name_the_field(params, field):
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_spec({"name": "b", "kind": "bandwidth", "params": params})
    assert caught.value.field == field


def test_without_a_live_upstream_connection_the_fault_does_not_act():
    # Pacing needs mitmproxy's server transport (tests/test_faults_wire.py covers it live).
    flow = tflow.tflow(resp=True)
    with taddons.context():
        assert Bandwidth(Bandwidth.Params(rate_kbps=10)).body_filter(flow) is None


def test_responses_without_body_are_not_paced():
    flow = tflow.tflow(req=http.Request.make("HEAD", "https://registry-1.docker.io/v2/a/blobs/x"), resp=True)
    assert Bandwidth(Bandwidth.Params(rate_kbps=10)).body_filter(flow) is None
