from dataclasses import dataclass

import pytest

from chaos.errors import UsageError
from chaos.faults.kind import FaultKind
from chaos.faults.match import Match
from chaos.faults.registry import register
from chaos.faults.spec import DEFAULT_TTL_S, MAX_TTL_S, FaultSpecError, ParamError, parse_fault_spec
from tests._faults_helpers import NOW, spec


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
            "origins": ["mirror", "unknown"],
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
        # Hostile or mistyped numbers: each a 400 naming its field, never an OverflowError.
        ({"ttl_s": 10**400}, "ttl_s"),
        ({"ttl_s": 1e12}, "ttl_s"),
        ({"ttl_s": MAX_TTL_S + 1}, "ttl_s"),
        ({"ttl_s": float("nan")}, "ttl_s"),
        ({"ttl_s": float("inf")}, "ttl_s"),
        ({"expires_at": 10**400}, "expires_at"),
        ({"expires_at": NOW + MAX_TTL_S + 1}, "expires_at"),
        ({"expires_at": float("nan")}, "expires_at"),
        ({"kind": "test-tunable", "params": {"delay_ms": 10**400}}, "params.delay_ms"),
        ({"kind": "test-tunable", "params": {"delay_ms": 1, "ratio": 10**400}}, "params.ratio"),
        ({"kind": "test-tunable", "params": {"delay_ms": float("nan")}}, "params.delay_ms"),
        ({"trigger": {"first": 10**400}}, "trigger.first"),
        ({"trigger": {"after": 10**400}}, "trigger.after"),
        ({"trigger": {"probability": 10**400}}, "trigger.probability"),
        ({"trigger": {"probability": 0.5, "seed": 10**400}}, "trigger.seed"),
        ({"trigger": {"duration_s": 10**400}}, "trigger.duration_s"),
        ({"trigger": {"flap": {"period_s": 10**400, "down_fraction": 0.5}}}, "trigger.flap.period_s"),
        ({"match": {"roles": [[[[[[[[["registry"]]]]]]]]]}}, "match.roles[0][0][0][0][0][0]"),
        ({"match": {"origins": ["mirrror"]}}, "match.origins"),
        ({"match": {"origins": "mirror"}}, "match.origins"),
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


def test_trigger_errors_read_as_the_field_then_the_problem():
    with pytest.raises(FaultSpecError) as caught:
        spec(trigger={"probability": 1.5})
    assert str(caught.value) == "trigger.probability: expected a number from 0 to 1, got 1.5"


def test_ttl_is_capped_at_a_day_and_the_error_says_so():
    assert spec(ttl_s=MAX_TTL_S).expires_at == NOW + MAX_TTL_S
    with pytest.raises(FaultSpecError) as caught:
        spec(ttl_s=1e12)
    assert str(caught.value) == "ttl_s: at most 86400 s (24 h), got 1e+12"


def test_huge_values_are_cut_in_messages():
    with pytest.raises(FaultSpecError) as caught:
        spec(kind="test-tunable", params={"delay_ms": "9" * 100_000})
    assert len(str(caught.value)) < 200
    with pytest.raises(FaultSpecError) as caught:
        spec(**{"x" * 100_000: 1})
    assert len(str(caught.value)) < 300


def test_deep_nesting_anywhere_is_refused_before_anything_walks_it():
    value = "x"
    for _ in range(100_000):
        value = [value]
    with pytest.raises(FaultSpecError, match="nested deeper than 8 levels"):
        spec(params=value)
