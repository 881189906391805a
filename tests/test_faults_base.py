from dataclasses import dataclass

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.errors import UsageError
from chaos.faults.base import (
    DEFAULT_TTL_S,
    DuplicateFault,
    FaultKind,
    FaultSet,
    FaultSpecError,
    Match,
    UnknownFault,
    parse_fault_spec,
    run_hook,
)
from chaos.faults.registry import kinds, register
from chaos.proxy.classify import Endpoint

NOW = 1_000_000.0


@register
class _Tunable(FaultKind):
    """A test-only kind exercising every parameter type the parser supports."""

    name = "test-tunable"

    @dataclass(frozen=True)
    class Params:
        delay_ms: int
        ratio: float = 1.0
        enabled: bool = True
        label: str | None = None


def spec(**overrides):
    data = {"name": "hub-down", "kind": "refuse"}
    data.update(overrides)
    return parse_fault_spec(data, now=NOW)


def test_minimal_spec_matches_everything_and_expires_by_default():
    parsed = spec()
    assert (parsed.name, parsed.kind, parsed.match) == ("hub-down", "refuse", Match())
    assert parsed.expires_at == NOW + DEFAULT_TTL_S


def test_full_spec_round_trips_through_to_dict():
    parsed = spec(
        kind="test-tunable",
        params={"delay_ms": 5, "ratio": 1, "label": "x"},
        match={
            "roles": ["registry"],
            "hosts": ["*.docker.io"],
            "endpoints": ["manifest", "blob"],
            "methods": ["get"],
            "repository": "library/*",
        },
        ttl_s=10,
    )
    assert parsed.params == _Tunable.Params(delay_ms=5, ratio=1.0, label="x")
    assert parsed.match.methods == ("GET",)
    again = parse_fault_spec(parsed.to_dict(), now=NOW)
    assert again == parsed


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"kind": "refuze"}, "kind"),
        ({"kind": None}, "kind"),
        ({"name": "Hub Down"}, "name"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
        ({"params": {"delay_ms": 1}}, "params.delay_ms"),
        ({"params": ["x"]}, "params"),
        ({"kind": "test-tunable"}, "params.delay_ms"),
        ({"kind": "test-tunable", "params": {"delay_ms": -1}}, "params.delay_ms"),
        ({"kind": "test-tunable", "params": {"delay_ms": 1.5}}, "params.delay_ms"),
        ({"kind": "test-tunable", "params": {"delay_ms": "10"}}, "params.delay_ms"),
        ({"kind": "test-tunable", "params": {"delay_ms": True}}, "params.delay_ms"),
        ({"kind": "test-tunable", "params": {"delay_ms": 1, "ratio": float("inf")}}, "params.ratio"),
        ({"kind": "test-tunable", "params": {"delay_ms": 1, "enabled": 1}}, "params.enabled"),
        ({"kind": "test-tunable", "params": {"delay_ms": 1, "label": 3}}, "params.label"),
        ({"kind": "test-tunable", "params": {"delay_ms": None}}, "params.delay_ms"),
        ({"match": "registry"}, "match"),
        ({"match": {"role": ["registry"]}}, "match.role"),
        ({"match": {"roles": "registry"}}, "match.roles"),
        ({"match": {"roles": ["hub"]}}, "match.roles"),
        ({"match": {"endpoints": ["manifests"]}}, "match.endpoints"),
        ({"match": {"methods": ["GE T"]}}, "match.methods"),
        ({"match": {"hosts": ["registry-1.docker.io:443"]}}, "match.hosts"),
        ({"match": {"repository": "library/[ab"}}, "match.repository"),
        ({"match": {"repository": "Library/*"}}, "match.repository"),
        ({"match": {"repository": 3}}, "match.repository"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": -5}, "ttl_s"),
        ({"ttl_s": "300"}, "ttl_s"),
        ({"ttl_s": 5, "expires_at": NOW + 5}, "ttl_s"),
        ({"expires_at": NOW - 1}, "expires_at"),
    ],
)
def test_bad_specs_name_the_field(overrides, field):
    with pytest.raises(FaultSpecError) as caught:
        spec(**overrides)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, UsageError)


def test_spec_must_be_a_mapping():
    with pytest.raises(FaultSpecError, match="fault: expected a mapping"):
        parse_fault_spec(["refuse"])


def test_unknown_kind_lists_known_ones():
    with pytest.raises(FaultSpecError, match=r"expected one of: .*refuse.*reset"):
        spec(kind="refuze")


MANIFEST = Endpoint("registry", "manifest", "library/alpine", "3", "tag")
CONNECT = Endpoint("registry", "connect")


@pytest.mark.parametrize(
    "match, host, method, endpoint, expected",
    [
        (Match(), "registry-1.docker.io", "GET", MANIFEST, True),
        (Match(roles=("auth",)), "registry-1.docker.io", "GET", MANIFEST, False),
        (Match(hosts=("*.docker.io",)), "Registry-1.Docker.IO", "GET", MANIFEST, True),
        (Match(hosts=("auth.docker.io",)), "registry-1.docker.io", "GET", MANIFEST, False),
        (Match(endpoints=("blob",)), "registry-1.docker.io", "GET", MANIFEST, False),
        (Match(methods=("HEAD",)), "registry-1.docker.io", "get", MANIFEST, False),
        (Match(methods=("GET",)), "registry-1.docker.io", "get", MANIFEST, True),
        (Match(repository="library/*"), "registry-1.docker.io", "GET", MANIFEST, True),
        (Match(repository="acme/*"), "registry-1.docker.io", "GET", MANIFEST, False),
        # A CONNECT knows only its host: narrower faults leave the tunnel alone.
        (Match(roles=("registry",)), "registry-1.docker.io", "CONNECT", CONNECT, True),
        (Match(endpoints=("manifest",)), "registry-1.docker.io", "CONNECT", CONNECT, False),
        (Match(methods=("GET",)), "registry-1.docker.io", "CONNECT", CONNECT, False),
        (Match(repository="*"), "registry-1.docker.io", "CONNECT", CONNECT, False),
    ],
)
def test_match(match, host, method, endpoint, expected):
    assert match.matches(host, method, endpoint) is expected


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


def test_fault_set_keeps_insertion_order_and_replaces_in_place():
    faults = FaultSet(clock=Clock())
    for name in ("a", "b", "c"):
        faults.add(spec(name=name))
    faults.replace(spec(name="a", kind="reset"))
    assert [(s.name, s.kind) for s in faults.specs()] == [
        ("a", "reset"),
        ("b", "refuse"),
        ("c", "refuse"),
    ]


def test_fault_set_rejects_duplicates_and_unknown_names():
    faults = FaultSet(clock=Clock())
    faults.add(spec())
    with pytest.raises(DuplicateFault):
        faults.add(spec())
    with pytest.raises(UnknownFault):
        faults.replace(spec(name="other"))
    with pytest.raises(UnknownFault):
        faults.remove("other")
    faults.remove("hub-down")
    assert faults.specs() == []


def test_expired_faults_vanish():
    clock = Clock()
    faults = FaultSet(clock=clock)
    faults.add(spec(name="short", ttl_s=1))
    faults.add(spec(name="long", ttl_s=10))
    clock.now = NOW + 1
    assert [s.name for s in faults.specs()] == ["long"]
    assert [a.spec.name for a in faults.matching("registry-1.docker.io", "GET", MANIFEST)] == ["long"]
    faults.add(spec(name="short", ttl_s=1))  # the expired name is free again


def test_matching_filters_by_match():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="auth-only", match={"roles": ["auth"]}))
    faults.add(spec(name="all"))
    assert [a.spec.name for a in faults.matching("registry-1.docker.io", "GET", MANIFEST)] == ["all"]


def test_run_hook_stops_once_the_flow_is_killed():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="first", kind="reset"))
    faults.add(spec(name="second", kind="reset"))
    flow = tflow.tflow(resp=True)
    applied = run_hook(faults.matching("h", "GET", MANIFEST), "on_response_headers", flow)
    assert applied == ["first"]
    assert flow.error.msg == "Connection killed."


def test_run_hook_skips_kinds_without_that_hook():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="r", kind="reset"))
    flow = tflow.tflow(req=http.Request.make("GET", "https://registry-1.docker.io/v2/"))
    assert run_hook(faults.matching("h", "GET", MANIFEST), "on_request", flow) == []
    assert flow.error is None


def test_registry_rejects_a_second_kind_with_the_same_name():
    class Impostor(FaultKind):
        name = "refuse"

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
    assert kinds()["refuse"].__name__ == "Refuse"


def test_registry_requires_a_name():
    class Nameless(FaultKind):
        pass

    with pytest.raises(TypeError, match="name"):
        register(Nameless)
