"""Why a step came out as it did, from its journal record alone.

One generic mechanism for every step: a cause chain from the client's result
back to what caused it,

    the client's result <- what the mirror answered <- the upstream requests
    the mirror (or the client) made in that step: origin, endpoint, status,
    time held <- the fault that acted on them

plus a lab component that was not running, and, where a known pattern
explains the chain, one sentence that says it (Hub's rate limit masked as
"manifest unknown"; a request held open by a blackhole for the whole step; the
mirror process gone). Built for every failed step, every failed pull and
every pull that fell back to Hub; recorded as the step's `diagnosis` and
printed under it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.journal import StepRecord

MAX_LINE = 240
NOTABLE_LINKS = 4  # upstream links shown; the journal keeps every event


@dataclass(frozen=True)
class Link:
    link: str  # client | mirror | upstream | component
    text: str


@dataclass(frozen=True)
class Diagnosis:
    summary: str | None
    chain: tuple[Link, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "chain": [asdict(link) for link in self.chain]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnosis:
        return cls(data.get("summary"), tuple(Link(**link) for link in data.get("chain", ())))

    def lines(self) -> list[str]:
        """One to three lines for the console."""
        out = []
        if self.summary:
            out.append(f"why: {self.summary}")
        if self.chain:
            out.append("chain: " + " <- ".join(link.text for link in self.chain))
        return [_cut(line) for line in out[:3]]


def diagnose(record: StepRecord, fault_kinds: Mapping[str, str]) -> Diagnosis | None:
    """The cause chain of a step that needs one (failed, or a pull that failed or
    fell back to Hub); None for a step that went as it should without a fallback.
    fault_kinds: fault name -> kind, from the journal's fault windows."""
    results = record.outcome.get("results") or []
    pulls = [r for r in results if "served_by" in r and "attempts" in r]
    troubled = [r for r in pulls if not r.get("ok") or r.get("served_by") == "hub"]
    if record.passed and not troubled:
        return None
    chain: list[Link] = []
    result = troubled[0] if troubled else None
    client = _client_link(record, result, len(troubled), len(pulls))
    if client:
        chain.append(client)
    mirror = _mirror_attempt(result) if result else None
    if mirror is not None:
        chain.append(Link("mirror", _mirror_text(mirror)))
    upstream = _upstream_links(record, fault_kinds, fell_back=bool(result and result.get("served_by") == "hub"))
    chain += upstream
    for name, why in record.components_down.items():
        chain.append(Link("component", f"{name} is not running: {why}"))
    summary = _summary(record, result, mirror, fault_kinds)
    if not chain and not summary:
        return None
    return Diagnosis(summary, tuple(chain))


# -- links ------------------------------------------------------------------------


def _client_link(record: StepRecord, result: Mapping[str, Any] | None, troubled: int, pulls: int) -> Link | None:
    of = f" ({troubled} of {pulls} pulls)" if pulls > 1 else ""
    if result is None:
        code = record.outcome.get("error_code")
        return Link("client", f"step: {code}") if code else None
    if result.get("ok"):
        return Link("client", f"client fell back to Hub and pulled from there{of}")
    return Link("client", f"client: {result.get('error_code') or 'failed'}{of}")


def _mirror_attempt(result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((a for a in result.get("attempts") or () if a.get("endpoint") == "mirror"), None)


def _mirror_text(attempt: Mapping[str, Any]) -> str:
    if attempt.get("ok"):
        return "mirror served it"
    status, code, message = attempt.get("status"), attempt.get("error_code"), attempt.get("message") or ""
    if status and status < 400:
        # The answer began well (a blob's 200) and broke while its body streamed.
        return f"mirror answered {status}, then the transfer broke ({code or 'no error code'})"
    if status:
        return f"mirror answered {status} {code or ''}".rstrip()
    return f"mirror did not answer ({code or 'no answer'}{': ' + _short(message) if message else ''})"


def _upstream_links(record: StepRecord, fault_kinds: Mapping[str, str], *, fell_back: bool) -> list[Link]:
    """The notable upstream requests of the step: those a fault acted on, that
    failed or got no answer, and those still held open when the step ended."""
    notable: Counter[str] = Counter()
    for event in record.events:
        if not _notable(event, fell_back):
            continue
        notable[_event_text(event, fault_kinds)] += 1
    links = [Link("upstream", text + (f" x{count}" if count > 1 else "")) for text, count in notable.most_common(NOTABLE_LINKS)]
    for held in record.held[:NOTABLE_LINKS]:
        links.append(Link("upstream", _held_text(held, fault_kinds)))
    return links


def _notable(event: Mapping[str, Any], fell_back: bool) -> bool:
    if event.get("fault"):
        return True
    status = event.get("status")
    if event.get("kind") == "ping" and status == 401:
        return False  # every client's first request: the challenge, not a failure
    if event.get("origin") == "client" and not fell_back:
        return False
    return status is None or status >= 400


def _who(event: Mapping[str, Any]) -> str:
    return {"mirror": "mirror", "client": "client", "push-registry": "push registry"}.get(event.get("origin") or "", "a client")


def _what(event: Mapping[str, Any]) -> str:
    if event.get("kind") == "connect" or event.get("method") == "CONNECT":
        return f"CONNECT {event.get('host') or 'Hub'}"
    what = f"{event.get('method') or ''} {event.get('kind') or 'request'}".strip()
    return what + (f" {event['repository']}" if event.get("repository") else "")


def _fault_text(names: str | None, fault_kinds: Mapping[str, str]) -> str:
    if not names:
        return ""
    faults = [f"{name} ({fault_kinds[name]})" if name in fault_kinds else name for name in names.split(",")]
    return f" by fault {', '.join(faults)}"


def _event_text(event: Mapping[str, Any], fault_kinds: Mapping[str, str]) -> str:
    status = event.get("status")
    if status is None:
        outcome = f"no answer ({_short(event.get('error') or 'connection closed')})"
    else:
        outcome = str(status)
    held = event.get("latency_ms")
    held_text = f", held {held / 1000:.1f}s" if held and held >= 1000 else ""
    return f"{_who(event)} -> Hub: {_what(event)}: {outcome}{held_text}{_fault_text(event.get('fault'), fault_kinds)}"


def _held_text(held: Mapping[str, Any], fault_kinds: Mapping[str, str]) -> str:
    seconds = held.get("held_s")
    return (f"{_who(held)} -> Hub: {_what(held)} still held open when the step ended"
            + (f" ({seconds:.1f}s)" if isinstance(seconds, (int, float)) else "")
            + _fault_text(held.get("fault") or ",".join(held.get("faults") or []) or None, fault_kinds))


# -- the sentence -----------------------------------------------------------------


def _summary(record: StepRecord, result: Mapping[str, Any] | None, mirror: Mapping[str, Any] | None,
             fault_kinds: Mapping[str, str]) -> str | None:
    mirror_events = [e for e in record.events if e.get("origin") in (None, "mirror", "unknown")]
    fault_events = [e for e in record.events if e.get("fault")]
    code = (result or {}).get("error_code") or record.outcome.get("error_code")
    mirror_code = (mirror or {}).get("error_code")
    mirror_status = (mirror or {}).get("status")
    if "mirror" in record.components_down and mirror is not None and not mirror.get("ok"):
        return f"the mirror process is not running ({_short(record.components_down['mirror'])}), so the mirror could not answer"
    if mirror_code == "MANIFEST_UNKNOWN" and any(e.get("status") == 429 for e in mirror_events):
        return "Hub's rate limit masked as \"manifest unknown\": the mirror got 429 from Hub and answered 404"
    if code == "TIMEOUT":
        blocking = [h for h in record.held if h.get("origin") in (None, "mirror", "unknown", "client")] or [
            e for e in record.events if e.get("status") is None and e.get("fault") and e.get("late")]
        if blocking:
            first = blocking[0]
            fault = first.get("fault") or ",".join(first.get("faults") or []) or None
            return (f"the {_who(first)}'s {_what(first)} was held open{_fault_text(fault, fault_kinds)} "
                    "for the whole step, so the pull timed out")
    if mirror_status and mirror_status >= 500 and fault_events:
        return f"Hub's failure{_fault_text(fault_events[0].get('fault'), fault_kinds)} reached the client as the mirror's {mirror_status}"
    fallback = _fallback_clause(result)
    mirror_faulted = [e for e in mirror_events if e.get("fault")]
    if mirror_status and mirror_status < 400 and mirror_faulted:
        return (f"the mirror's download from Hub was cut{_fault_text(mirror_faulted[0]['fault'], fault_kinds)}: "
                f"it {_mirror_text(mirror).removeprefix('mirror ')}{fallback}")
    if mirror is not None and not mirror.get("ok") and mirror_faulted:
        return (f"the mirror could not reach Hub, blocked{_fault_text(mirror_faulted[0]['fault'], fault_kinds)}, "
                f"and {_mirror_text(mirror).removeprefix('mirror ')}{fallback}")
    if mirror_code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN") and any(e.get("status") == 401 and e.get("kind") != "ping" for e in mirror_events):
        return ("Hub refused the mirror (401: its requests carry no credentials that grant this repository), "
                f"so it {_mirror_text(mirror).removeprefix('mirror ')}{fallback}")
    if result is not None and result.get("ok") and result.get("served_by") == "hub" and mirror is not None and not mirror.get("ok"):
        return f"the mirror could not serve it ({_mirror_text(mirror)}), so the client fell back to Hub"
    if fault_events:
        names = sorted({name for e in fault_events for name in e["fault"].split(",")})
        return f"{_fault_list(names, fault_kinds)} acted on {len(fault_events)} upstream request{'s' if len(fault_events) != 1 else ''}"
    return None


def _fallback_clause(result: Mapping[str, Any] | None) -> str:
    """How the client's own fallback to Hub went, after the mirror."""
    hub = next((a for a in (result or {}).get("attempts") or () if a.get("endpoint") == "hub"), None)
    if hub is None:
        return ""
    if hub.get("ok"):
        return "; the client fell back to Hub and pulled from there"
    return f"; the client's own fallback to Hub failed too ({hub.get('error_code') or 'failed'})"


def _fault_list(names: Iterable[str], fault_kinds: Mapping[str, str]) -> str:
    names = list(names)
    label = ", ".join(f"{n} ({fault_kinds[n]})" if n in fault_kinds else n for n in names)
    return f"fault{'s' if len(names) > 1 else ''} {label}"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."
