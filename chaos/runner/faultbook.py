"""FaultBook: the faults a run switched on, and when each was on.

Steps switch faults through it (it is the StepContext's FaultControl), so
the runner always knows which faults are active for a step's record and can
write each fault's window (on, off, by which step) to the journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chaos.faults.faultset import UnknownFault
from chaos.journal import FaultWindow, Journal, now_iso
from chaos.runner.environment import Control


class FaultBook:
    def __init__(self, control: Control, journal: Journal):
        self.control = control
        self.journal = journal
        self.step = ""  # the step now running: windows name it
        self._open: dict[str, FaultWindow] = {}

    @property
    def on(self) -> list[str]:
        """Faults this run switched on and has not seen switched off."""
        return list(self._open)

    def add(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        applied = self.control.add(dict(spec))
        name = applied.get("name", spec.get("name"))
        window = FaultWindow(name=name, kind=applied.get("kind", spec.get("kind")), spec=dict(spec), on=now_iso(),
                             on_step=self.step, expires_at=applied.get("expires_at"))
        self.journal.fault_windows.append(window)
        self._open[name] = window
        return applied

    def remove(self, name: str) -> bool:
        try:
            self.control.remove(name)
            removed = True
        except UnknownFault:
            removed = False  # expired, or already cleared
        self._close(name, self.step)
        return removed

    def reset(self) -> tuple[str, ...]:
        names = tuple(self._open)
        self.control.reset()
        self.closed_all(self.step)
        return names

    def active(self) -> list[str]:
        return [fault["name"] for fault in self.control.list()]

    def closed_all(self, by_step: str | None) -> None:
        """Every fault is off: a step reset them or restarted the proxy (by_step),
        or the runner cleared them before the rollback or at the end (None)."""
        for name in list(self._open):
            self._close(name, by_step)

    def _close(self, name: str, by_step: str | None) -> None:
        window = self._open.pop(name, None)
        if window is not None:
            window.off = now_iso()
            window.off_step = by_step
