"""Re-exports only: the fault framework's public names under their old home.

The framework used to live in this one file; it is now split by purpose, and
this module keeps `from chaos.faults.base import X` working for everything it
used to define. New code should import from the module that defines the name:

- spec.py: FaultSpec, parse_fault_spec, FaultSpecError, ParamError, Counters,
  DEFAULT_TTL_S (a fault as data, validated from a plain dict)
- match.py: Match (which requests a fault applies to)
- kind.py: FaultKind, NoParams (the interface a fault kind implements)
- body.py: BodyFilter, CutAfter, has_body, content_length (acting on a
  streamed response body)
- lifetime.py: Lifetime (when an active fault ends)
- faultset.py: FaultSet, ActiveFault, DuplicateFault, UnknownFault (the
  active faults, their trigger decisions, counters and expiry)
- hooks.py: run_hook, needs_hold, hold_request, body_filters, FilterChain,
  note_applied, APPLIED (how the fired faults act on a flow, in order)

Matching, triggering and expiry live once, in these modules (and triggers.py),
never in a kind.
"""

from chaos.faults.body import BodyFilter, CutAfter, content_length, has_body
from chaos.faults.faultset import ActiveFault, DuplicateFault, FaultSet, UnknownFault
from chaos.faults.hooks import (
    APPLIED,
    FilterChain,
    body_filters,
    hold_request,
    needs_hold,
    note_applied,
    run_hook,
)
from chaos.faults.kind import FaultKind, NoParams
from chaos.faults.lifetime import Lifetime
from chaos.faults.match import Match
from chaos.faults.spec import (
    DEFAULT_TTL_S,
    Counters,
    FaultSpec,
    FaultSpecError,
    ParamError,
    parse_fault_spec,
)

__all__ = [
    "APPLIED",
    "DEFAULT_TTL_S",
    "ActiveFault",
    "BodyFilter",
    "Counters",
    "CutAfter",
    "DuplicateFault",
    "FaultKind",
    "FaultSet",
    "FaultSpec",
    "FaultSpecError",
    "FilterChain",
    "Lifetime",
    "Match",
    "NoParams",
    "ParamError",
    "UnknownFault",
    "body_filters",
    "content_length",
    "has_body",
    "hold_request",
    "needs_hold",
    "note_applied",
    "parse_fault_spec",
    "run_hook",
]
