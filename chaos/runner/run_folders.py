"""Run folders: where each run's journal and logs go, and the runs a kill cut short.

A run SIGKILLed leaves its journal saying "running" for ever. The next
`chaos run` (and `chaos report`) looks: a journal still "running" whose
process is gone, or whose pid now names another process (another start
time, or another boot), was killed, and says so.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from chaos.journal import Journal, JournalError
from chaos.lab.process import boot_id, identify

KILLED_ERROR = "the run's process ({pid}) ended before the run did: it was killed"


def own_process_proof() -> dict:
    """What tells this process from a later one given the same pid (Journal.pid_proof)."""
    me = identify(os.getpid())
    return {"start_time": me.start_time, "boot_id": boot_id()} if me else {}


def run_still_going(journal: Journal) -> bool:
    """Whether the process that wrote the journal still runs."""
    if journal.pid <= 0:
        return False
    current = identify(journal.pid)
    if current is None:
        return False
    proof = journal.pid_proof
    if proof:
        return proof.get("boot_id") == boot_id() and proof.get("start_time") == current.start_time
    # A journal without the proof (written by hand, or cut before it) has the command line to go by.
    return any("chaos" in arg for arg in current.cmdline)


def settle_if_killed(path: Path, journal: Journal) -> Journal:
    """A "running" journal whose process is gone becomes "killed" (written back)."""
    if journal.status != "running" or journal.pid == os.getpid() or run_still_going(journal):
        return journal
    journal.status = "killed"
    journal.error = journal.error or KILLED_ERROR.format(pid=journal.pid)
    try:
        journal.write(path)
    except OSError:
        pass  # a read-only copy: the report still says killed
    return journal


def mark_killed_runs(root: Path) -> list[Path]:
    """Every journal under root (run folders, and folders of them) cut short by a kill, now marked."""
    marked = []
    if not root.is_dir():
        return marked
    for path in sorted(list(root.glob("*/journal.json")) + list(root.glob("*/*/journal.json"))):
        try:
            journal = Journal.load(path)
        except JournalError:
            continue
        if journal.status == "running" and settle_if_killed(path, journal).status == "killed":
            marked.append(path)
    return marked


def new_run_folder(root: Path, scenario_name: str, now: datetime | None = None) -> Path:
    """runs/<time>-<scenario>, never an earlier run's folder: a suffix when taken."""
    stamp = f"{(now or datetime.now()):%Y%m%d-%H%M%S}"
    folder = root / f"{stamp}-{scenario_name}"
    suffix = 2
    while folder.exists():
        folder = root / f"{stamp}-{scenario_name}-{suffix}"
        suffix += 1
    return folder
