"""Shared by the tests that run the real lab: run `chaos` as a user would and
find anything a run left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chaos.lab.ports import is_listening
from chaos.lab.process import other_processes

ROOT = Path(__file__).resolve().parents[1]
CHAOS = [sys.executable, "-m", "chaos.cli"]
RUN_DEADLINE_S = 240


def run_chaos(*args: str, cwd: Path, env: dict | None = None, timeout: float = RUN_DEADLINE_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CHAOS, *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def processes_mentioning(text: str) -> list[str]:
    """Live processes (not zombies, not this test process) whose command line
    holds text: a run folder, as every lab component's config, confdir or
    accounts file lives there. (Every tmp_path names "pytest-of-...", so no
    command line may be skipped for naming pytest.)"""
    return [f"{identity.pid}: {' '.join(identity.cmdline)}" for identity in other_processes()
            if text in " ".join(identity.cmdline)]


def listening(ports) -> list[int]:
    return [port for port in ports if is_listening(int(port))]
