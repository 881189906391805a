"""Shared by the tests that run the real lab: run `chaos` as a user would and
find anything a run left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chaos.lab.ports import is_listening

ROOT = Path(__file__).resolve().parents[1]
CHAOS = [sys.executable, "-m", "chaos.cli"]
RUN_DEADLINE_S = 240


def run_chaos(*args: str, cwd: Path, env: dict | None = None, timeout: float = RUN_DEADLINE_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CHAOS, *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention text (a run folder: every
    lab component's config, confdir or accounts file lives there)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
        if text in cmdline and state != "Z" and "pytest" not in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def listening(ports) -> list[int]:
    return [port for port in ports if is_listening(int(port))]
