"""Reading the fault proxy's event tap with cursors: what each step caused,
and everything since an earlier step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chaos.runner.environment import Control

PAGE = 1000
MAX_PAGES = 1000  # bounded: at most a million events per read


class TapReader:
    def __init__(self, control: Control, wait_for_quiet: Callable[[], bool]):
        self.control = control
        self.wait_for_quiet = wait_for_quiet
        self.cursor = 0  # the last event already given to a step
        self.start_cursor = 0  # the last event before the run began
        self.step_cursors: dict[str, int] = {}  # the cursor when each step started

    def begin(self) -> None:
        """The run starts now: earlier events (seeding, a previous run) are not its own."""
        self.cursor = self.start_cursor = self.drain(0)[1]

    def step_started(self, name: str) -> None:
        self.step_cursors[name] = self.cursor

    def step_events(self) -> list[dict[str, Any]]:
        """The events since the previous step's, once the lab has gone quiet."""
        self.wait_for_quiet()
        events, self.cursor = self.drain(self.cursor)
        return events

    def events_since(self, step_name: str) -> list[dict[str, Any]]:
        """Every event since the named step started ("start": since the run began)."""
        cursor = self.start_cursor if step_name == "start" else self.step_cursors[step_name]
        return self.drain(cursor)[0]

    def proxy_restarted(self) -> None:
        """A new proxy's tap starts again at 0: counts that span the restart see only what came after it."""
        self.cursor = self.start_cursor = 0
        self.step_cursors = {name: 0 for name in self.step_cursors}

    def drain(self, cursor: int) -> tuple[list[dict[str, Any]], int]:
        events: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            page = self.control.events(after=cursor, limit=PAGE)
            events.extend(page.events)
            cursor = page.next
            if len(page.events) < PAGE:
                break
        return events, cursor
