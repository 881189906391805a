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
