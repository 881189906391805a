"""Random documents never make the loader raise anything but ScenarioError."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.errors import ScenarioError
from chaos.language.marked_yaml import load_marked_text
from chaos.scenario.loader import parse_scenario

KEYS = ["name", "description", "lab", "steps", "pull", "push", "check", "fault", "clear", "expect",
        "login", "users", "images", "ref", "size", "private", "kind", "match", "ok", "error", "timeout",
        "served_by", "same_digest_as", "cached", "not_cached", "to", "image", "upstream", "platforms"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**10), st.floats(allow_nan=False),
                    st.sampled_from(["alpine", "alpine:3.19", "a/b:1", "mirror", "hub", "refuse", "1MB", "", "UNSUPPORTED", "all"]),
                    st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_give_scenario_errors_only(document):
    text = yaml.safe_dump(document)
    try:
        parse_scenario(load_marked_text(text, "fuzz.yaml"), "fuzz.yaml")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.yaml:")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_scenario_errors_only(text):
    try:
        parse_scenario(load_marked_text(text, "fuzz.yaml"), "fuzz.yaml")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.yaml:")
