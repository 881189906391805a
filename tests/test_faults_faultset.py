import pytest

from chaos.faults.faultset import DuplicateFault, FaultSet, UnknownFault
from chaos.faults.spec import Counters, parse_fault_spec
from tests._faults_helpers import CONNECT, MANIFEST, NOW, Clock, spec


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


def test_removing_a_fault_ends_its_lifetime():
    faults = FaultSet(clock=Clock())
    faults.add(spec())
    [active] = faults.matching("h", "GET", MANIFEST)
    faults.remove("hub-down")
    assert active.lifetime.ended


def test_a_listener_hears_every_change_expiry_included():
    clock = Clock()
    heard = []
    faults = FaultSet(clock=clock, listener=lambda change, spec: heard.append((change, spec.name)))
    faults.add(spec(name="a", ttl_s=10))
    faults.add(spec(name="b", ttl_s=100))
    faults.add(spec(name="c", ttl_s=100))
    faults.replace(spec(name="b", kind="reset", ttl_s=100))
    faults.remove("c")
    assert faults.next_expiry() == NOW + 10
    clock.now = NOW + 10
    faults.prune()
    assert faults.clear() == 1
    assert heard == [
        ("added", "a"), ("added", "b"), ("added", "c"), ("replaced", "b"), ("removed", "c"),
        ("expired", "a"), ("cleared", "b"),
    ]  # fmt: skip
    assert faults.next_expiry() is None


def test_clear_counts_only_faults_still_active():
    clock = Clock()
    faults = FaultSet(clock=clock)
    faults.add(spec(name="short", ttl_s=1))
    faults.add(spec(name="long", ttl_s=10))
    clock.now = NOW + 2
    assert faults.clear() == 1


def test_origins_take_part_in_matching_and_firing():
    faults = FaultSet(clock=Clock())
    faults.add(spec(name="mirror-only", match={"origins": ["mirror"]}))
    assert faults.fire("registry-1.docker.io", "GET", MANIFEST, origin="client") == []
    assert [a.spec.name for a in faults.fire("registry-1.docker.io", "GET", MANIFEST, origin="mirror")] == ["mirror-only"]
    assert [s.counters.matched for s in faults.specs()] == [1]


@pytest.mark.parametrize(
    "fields, whole",
    [
        ({}, True),
        ({"match": {"roles": ["registry"], "hosts": ["registry-1.docker.io"]}}, True),
        ({"trigger": {"after": 2, "start_after_s": 1}}, True),  # from some point on: every request
        ({"match": {"endpoints": ["manifest"]}}, False),
        ({"match": {"repository": "library/*"}}, False),
        ({"match": {"methods": ["GET"]}}, False),
        ({"trigger": {"probability": 0.5}}, False),
        ({"trigger": {"first": 1}}, False),
        ({"trigger": {"every": 3}}, False),
    ],
)
def test_a_kind_is_told_whether_its_fault_takes_whole_connections(fields, whole):
    # refuse closes an HTTP/2 connection only for such a fault: never requests it did not pick.
    faults = FaultSet()
    faults.add(parse_fault_spec({"name": "f", "kind": "refuse", **fields}))
    [active] = faults.matching("registry-1.docker.io", "GET", MANIFEST)
    assert active.kind.whole_connections is whole
