import pytest

from chaos.faults.kind import FaultKind
from chaos.faults.registry import kinds, load_errors, register


def test_registry_rejects_a_second_kind_with_the_same_name():
    kinds()  # the built-in kinds load on first lookup; this file may run before any other looked

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


def test_builtin_kinds_are_discovered_without_a_list():
    assert {"refuse", "reset", "blackhole", "latency", "bandwidth", "stall", "truncate", "corrupt"} <= set(kinds())
    assert dict(load_errors()) == {}
