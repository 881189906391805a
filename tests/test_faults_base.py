"""chaos.faults.base only re-exports: every name it ever defined must still be
importable from it, and be the very object the defining module holds."""

import importlib

import pytest

import chaos.faults.base as base

HOMES = {
    "spec": ["DEFAULT_TTL_S", "Counters", "FaultSpec", "FaultSpecError", "ParamError", "parse_fault_spec"],
    "match": ["Match"],
    "kind": ["FaultKind", "NoParams"],
    "body": ["BodyFilter", "CutAfter", "content_length", "has_body"],
    "lifetime": ["Lifetime"],
    "faultset": ["ActiveFault", "DuplicateFault", "FaultSet", "UnknownFault"],
    "hooks": ["APPLIED", "FilterChain", "body_filters", "hold_request", "needs_hold", "note_applied", "run_hook"],
}


@pytest.mark.parametrize("module, name", [(m, n) for m, names in HOMES.items() for n in names])
def test_base_re_exports_the_defining_modules_object(module, name):
    home = importlib.import_module(f"chaos.faults.{module}")
    assert getattr(base, name) is getattr(home, name)


def test_base_exports_exactly_those_names():
    assert sorted(base.__all__) == sorted(n for names in HOMES.values() for n in names)
