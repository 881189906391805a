"""flow.metadata keys the proxy addon and the fault kinds share.

Namespaced ("hub_chaos.") so no other addon's keys collide. The addon writes
ORIGIN before any fault acts; hooks.py writes APPLIED as faults act.
"""

from __future__ import annotations

APPLIED = "hub_chaos.faults"
"""Names of the faults that acted on the flow, in order."""

ORIGIN = "hub_chaos.origin"
"""Who sent the request (chaos.vocab.names.ORIGINS), known by the listener it came in on."""
