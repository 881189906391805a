"""What a step did, typed: every kind's run returns an Outcome.

An Outcome holds the step's results, one per attempt (a pull of each image,
each repeat): PullResult and PushResult from the clients, ActionResult for
everything else. Expectations judge those attempts (chaos.steps.verdicts);
the journal stores Outcome.to_dict().
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from chaos.journal import Verdict
from chaos.vocab.results import PullResult, PushResult


@dataclass(frozen=True)
class ActionResult:
    """One attempt of a step that is neither a pull nor a push (a restart, a
    publish, a check, a wait): whether it worked, and what it found."""

    ok: bool
    error_code: str | None = None
    message: str | None = None
    seconds: float = 0.0
    digest: str | None = None  # publish: the new content's manifest digest
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def served_by(self) -> None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "facts": dict(self.facts)}


Result = PullResult | PushResult | ActionResult


@dataclass(frozen=True)
class Outcome:
    """A step's outcome. `results` are its attempts; a step that could not
    act at all (its deadline passed, a control API error) has none, and its
    own error_code and message say why."""

    kind: str
    ok: bool
    results: tuple[Result, ...] = ()
    error_code: str | None = None
    message: str | None = None
    seconds: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)
    repeats_wanted: int | None = None  # attempts a `repeat: N` (times images) asked for
    verdicts: tuple[Verdict, ...] = ()  # judged while the step ran (checks, waits, faults)

    @classmethod
    def of(cls, kind: str, results: tuple[Result, ...] | list[Result], **extra: Any) -> Outcome:
        """An outcome whose ok, error and time follow from its attempts: ok when
        every attempt was; the error of the last failed attempt."""
        results = tuple(results)
        failed = [r for r in results if not r.ok]
        return cls(
            kind=kind,
            ok=bool(results) and not failed,
            results=results,
            error_code=failed[-1].error_code if failed else None,
            message=failed[-1].message if failed else None,
            seconds=sum(r.seconds for r in results),
            **extra,
        )

    @property
    def attempts(self) -> tuple[Any, ...]:
        """What expectations judge: the results, or the outcome itself when it has none."""
        return self.results or (self,)

    @property
    def served_by(self) -> str | None:
        return self.results[0].served_by if len(self.results) == 1 else None

    @property
    def digest(self) -> str | None:
        """The first digest an attempt produced (what `same_digest_as` compares)."""
        return next((r.digest for r in self.results if r.digest), None)

    def to_dict(self, summary: str = "") -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.ok,
            "summary": summary,
            "error_code": self.error_code,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "results": [_plain(r) for r in self.results],
            "details": {k: _plain(v) for k, v in self.details.items()},
            "repeats_wanted": self.repeats_wanted,
        }


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
