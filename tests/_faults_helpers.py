"""Shared by the tests of the fault framework (tests/test_faults_*.py): a fixed
clock, a spec maker and the endpoints the matching tests use."""

from chaos.faults.spec import parse_fault_spec
from chaos.vocab.endpoints import Endpoint

NOW = 1_000_000.0

MANIFEST = Endpoint("registry", "manifest", "library/alpine", "3", "tag")
CONNECT = Endpoint("registry", "connect")


def spec(**overrides):
    data = {"name": "hub-down", "kind": "refuse"}
    data.update(overrides)
    return parse_fault_spec(data, now=NOW)


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now
