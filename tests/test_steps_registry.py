"""The step-kind catalogue: every kind found without a list, each complete."""

from __future__ import annotations

import pytest

from chaos.language.expect import EXPECT_KEYS
from chaos.steps.kind import StepKind
from chaos.steps.registry import kinds, register

SHIPPED = {"check", "clear", "fault", "publish", "pull", "push", "restart", "wait"}


def test_the_shipped_kinds_are_discovered_in_a_stable_order():
    assert set(kinds()) == SHIPPED
    assert list(kinds()) == sorted(kinds())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_kind_implements_the_interface(name):
    kind = kinds()[name]
    for method in ("parse", "schema", "describe", "run"):
        assert getattr(type(kind), method) is not getattr(StepKind, method), f"{name} lacks {method}"
    assert set(kind.expect_keys) <= set(EXPECT_KEYS)
    assert kind.schema()


def test_a_second_kind_with_a_taken_name_is_refused():
    class Impostor(StepKind):
        name = "pull"

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
    assert type(kinds()["pull"]).__name__ == "Pull"


def test_a_kind_needs_a_name():
    class Nameless(StepKind):
        pass

    with pytest.raises(TypeError, match="name"):
        register(Nameless)
