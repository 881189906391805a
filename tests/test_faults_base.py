from dataclasses import dataclass

import asyncio

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from chaos.errors import UsageError
from chaos.faults.base import (
    APPLIED,
    DEFAULT_TTL_S,
    BodyFilter,
    Counters,
    DuplicateFault,
    FaultKind,
    FaultSet,
    FaultSpecError,
    FilterChain,
    Lifetime,
    Match,
    ParamError,
    UnknownFault,
    body_filters,
    hold_request,
    needs_hold,
    parse_fault_spec,
    run_hook,
)
from chaos.faults.registry import kinds, load_errors, register
from chaos.faults.triggers import Trigger
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

        def __post_init__(self):
            if self.delay_ms == 13:
                raise ParamError("delay_ms", "unlucky")


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
            "clients": ["127.0.0.2", "127.0.0.*", "127.0.0.0/30", "::1"],
        },
        trigger={"probability": 0.5, "seed": 1, "first": 3, "flap": {"period_s": 2, "down_fraction": 0.5}},
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
        ({"kind": "test-tunable", "params": {"delay_ms": 13}}, "params.delay_ms"),
        ({"match": {"endpoints": ["manifest_by_tag"]}}, "match.endpoints"),
        ({"match": {"clients": ["localhost"]}}, "match.clients"),
        ({"match": {"clients": ["127.0.0.1/33"]}}, "match.clients"),
        ({"match": {"clients": ["127.0.0.256"]}}, "match.clients"),
        ({"match": {"clients": ["1.2.3.4.*"]}}, "match.clients"),
        ({"match": {"clients": ["127.0.[01].*"]}}, "match.clients"),
        ({"match": {"clients": "127.0.0.1"}}, "match.clients"),
        ({"trigger": {"probability": 1.5}}, "trigger.probability"),
        ({"trigger": {"flap": {"period_s": -1, "down_fraction": 0.5}}}, "trigger.flap.period_s"),
        ({"trigger": {"start_after_s": 300}}, "trigger.start_after_s"),
        ({"trigger": {"start_after_s": 5}, "ttl_s": 5}, "trigger.start_after_s"),
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


def test_trigger_errors_read_as_the_field_then_the_problem():
    with pytest.raises(FaultSpecError) as caught:
        spec(trigger={"probability": 1.5})
    assert str(caught.value) == "trigger.probability: expected a number from 0 to 1, got 1.5"


MANIFEST_BY_DIGEST = Endpoint("registry", "manifest", "library/alpine", "sha256:" + "a" * 64, "digest")
BLOB = Endpoint("registry", "blob", "library/alpine", "sha256:" + "a" * 64, "digest")


@pytest.mark.parametrize(
    "endpoints, endpoint, expected",
    [
        (("manifest",), MANIFEST, True),
        (("manifest",), MANIFEST_BY_DIGEST, True),
        (("manifest_tag",), MANIFEST, True),
        (("manifest_tag",), MANIFEST_BY_DIGEST, False),
        (("manifest_digest",), MANIFEST_BY_DIGEST, True),
        (("manifest_digest",), MANIFEST, False),
        (("manifest_digest",), BLOB, False),
        (("blob", "manifest_tag"), BLOB, True),
    ],
)
def test_manifests_can_be_selected_by_tag_or_by_digest(endpoints, endpoint, expected):
    assert Match(endpoints=endpoints).matches("h", "GET", endpoint) is expected


@pytest.mark.parametrize(
    "clients, client, expected",
    [
        (("127.0.0.2",), "127.0.0.2", True),
        (("127.0.0.2",), "127.0.0.1", False),
        (("127.0.0.*",), "127.0.0.9", True),
        (("127.0.0.0/30",), "127.0.0.3", True),
        (("127.0.0.0/30",), "127.0.0.4", False),
        (("127.0.0.0/30",), "::1", False),
        (("::1",), "::1", True),
        (("127.0.0.1",), None, False),
        ((), None, True),
    ],
)
def test_match_by_client_address(clients, client, expected):
    assert Match(clients=clients).matches("h", "GET", MANIFEST, client) is expected


def test_specs_carry_counters_that_input_ignores():
    faults = FaultSet(clock=Clock())
    faults.add(spec(trigger={"first": 1}))
    faults.fire("registry-1.docker.io", "GET", MANIFEST)
    faults.fire("registry-1.docker.io", "GET", MANIFEST)
    [listed] = faults.specs()
    assert listed.counters == Counters(matched=2, fired=1, applied=0)
    data = listed.to_dict()
    assert data["counters"] == {"matched": 2, "fired": 1, "applied": 0}
    assert parse_fault_spec(data, now=NOW) == listed  # a listed fault can be sent back as it is


def test_fire_decides_for_every_matching_fault_in_insertion_order():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="b-first-once", trigger={"first": 1}))
    faults.add(spec(name="a-always"))
    faults.add(spec(name="auth-only", match={"roles": ["auth"]}))
    fire = lambda: [a.spec.name for a in faults.fire("registry-1.docker.io", "GET", MANIFEST)]  # noqa: E731
    assert fire() == ["b-first-once", "a-always"]
    assert fire() == ["a-always"]
    assert [s.counters.matched for s in faults.specs()] == [2, 2, 0]


def test_connects_count_only_for_kinds_that_act_on_them():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="refuse"))
    faults.add(spec(name="reset", kind="reset"))
    fired = faults.fire("registry-1.docker.io", "CONNECT", CONNECT, connect=True)
    assert [a.spec.name for a in fired] == ["refuse"]
    assert [s.counters.matched for s in faults.specs()] == [1, 0]


def test_time_window_is_measured_from_when_the_fault_was_added():
    clock = Clock()
    faults = FaultSet(clock=clock)
    clock.now = NOW + 50  # parsed at NOW, added 50 s later
    faults.add(spec(trigger={"start_after_s": 10}))
    clock.now = NOW + 55
    assert faults.fire("h", "GET", MANIFEST) == []
    clock.now = NOW + 61
    assert len(faults.fire("h", "GET", MANIFEST)) == 1


def test_replacing_a_fault_starts_its_counters_afresh():
    faults = FaultSet(clock=Clock())
    faults.add(spec(trigger={"first": 1}))
    assert faults.fire("h", "GET", MANIFEST)
    assert not faults.fire("h", "GET", MANIFEST)
    faults.replace(spec(trigger={"first": 1}))
    assert faults.fire("h", "GET", MANIFEST)


def test_applied_counts_once_per_flow_and_names_the_fault_on_the_flow():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="rst", kind="reset"))
    flow = tflow.tflow(resp=True)
    fired = faults.fire("h", "GET", MANIFEST)
    run_hook(fired, "on_response_headers", flow)
    assert flow.metadata[APPLIED] == ["rst"]
    assert faults.specs()[0].counters.applied == 1


def test_lifetime_wait_ends_on_removal_timeout_expiry_or_abandon():
    clock = Clock()

    async def scenario():
        life = Lifetime(expires_at=NOW + 100, clock=clock)
        assert await life.wait(0.01) is False  # timed out, fault still on
        asyncio.get_running_loop().call_later(0.01, life.end)
        assert await life.wait() is True
        assert await Lifetime(NOW - 1, clock).wait() is True  # already expired
        assert await Lifetime(NOW + 100, clock).wait(abandoned=lambda: True) is False

    asyncio.run(scenario())


def test_removing_a_fault_ends_its_lifetime():
    faults = FaultSet(clock=Clock())
    faults.add(spec())
    [active] = faults.matching("h", "GET", MANIFEST)
    faults.remove("hub-down")
    assert active.lifetime.ended


class _Hold(FaultKind):
    name = "test-hold"
    log: list = []

    async def hold_request(self, flow, lifetime):
        self.log.append(self.params)
        await asyncio.sleep(0)
        return True


class _Tag(BodyFilter):
    def __init__(self, tag):
        self.tag = tag
        self.closed = False

    def __call__(self, chunk):
        return chunk + self.tag

    def close(self):
        self.closed = True


class _Tagger(FaultKind):
    name = "test-tagger"

    def body_filter(self, flow):
        return _Tag(self.params)


register(_Hold)
register(_Tagger)


class _Active:
    def __init__(self, kind, name):
        self.kind = kind
        self.applied = 0
        self.lifetime = None
        self.spec = type("S", (), {"name": name})()


def test_holds_run_in_order_and_stop_once_the_flow_is_killed():
    _Hold.log.clear()
    holds = [_Active(_Hold("one"), "one"), _Active(_Hold("two"), "two")]
    assert needs_hold(holds) and not needs_hold([_Active(FaultKind(None), "x")])
    flow = tflow.tflow()
    asyncio.run(hold_request(holds, flow))
    assert _Hold.log == ["one", "two"] and flow.metadata[APPLIED] == ["one", "two"]

    _Hold.log.clear()
    killed = tflow.tflow()
    killed.kill()
    asyncio.run(hold_request(holds, killed))
    assert _Hold.log == ["one"]


def test_body_filters_chain_in_fault_order_before_the_sink():
    faults = [_Active(_Tagger(b"1"), "one"), _Active(_Tagger(b"2"), "two")]
    flow = tflow.tflow(resp=True)
    filters = body_filters(faults, flow)
    seen = []
    chain = FilterChain(filters, lambda chunk: seen.append(chunk) or chunk)
    assert chain(b"x") == b"x12" and seen == [b"x12"]
    assert not chain.ends_response
    chain.close()
    assert all(f.closed for _, f in filters)
    assert flow.metadata[APPLIED] == ["one", "two"]


def test_builtin_kinds_are_discovered_without_a_list():
    assert {"refuse", "reset", "blackhole", "latency", "bandwidth", "stall", "truncate", "corrupt"} <= set(kinds())
    assert dict(load_errors()) == {}
