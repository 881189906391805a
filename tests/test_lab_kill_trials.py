"""Kill trials: a parent SIGKILLed the moment it has forked a component (or a
random moment just after) never leaves that component running. The death
signal (PR_SET_PDEATHSIG) is armed in the child after the fork; a parent that
dies before it is armed is caught by the child's check of its parent id.

bench/kill_trials.py does the same to a real `chaos run`."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid

from tests.lab_helpers import processes_mentioning

TRIALS = 24
SURVIVOR_DEADLINE_S = 5.0

# The parent: forks one ManagedProcess child whose command line carries the
# marker, and is SIGKILLed from its own after-fork hook, `delay` seconds after
# the fork (0: at once, while the child is still between fork and exec); an
# untied child is forked with no hook, so its parent dies once it has started.
# With `cli`, the parent first installs a SIGTERM handler as the chaos CLI does.
PARENT = """
import os, signal, sys, time
from pathlib import Path
from chaos.lab.process import ManagedProcess

marker, delay, log, tie, cli = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5] == "1"
if cli:
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)

def die():
    end = time.perf_counter() + delay
    while time.perf_counter() < end:
        pass
    os.kill(os.getpid(), signal.SIGKILL)

os.register_at_fork(after_in_parent=die)
argv = [sys.executable, "-c", "import time; time.sleep(60)", marker]
ManagedProcess("victim", argv, Path(log), tie_to_parent=tie).start()
# Reached only when the fork ran no hook (Popen without a preexec function: not tied).
die()
"""


def trial(tmp_path, *, delay: float, tie: bool = True, cli: bool = False) -> list[str]:
    """One kill; returns the command lines of the children still alive once
    the deadline has passed (and kills those, by pid)."""
    marker = f"hc-kill-trial-{uuid.uuid4().hex}"
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, marker, str(delay), str(tmp_path / f"{marker}.log"), "1" if tie else "0",
         "1" if cli else "0"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert parent.returncode == -signal.SIGKILL, parent.stderr  # killed at the moment planned, not earlier
    deadline = time.monotonic() + SURVIVOR_DEADLINE_S
    while (alive := processes_mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for line in alive:
        subprocess.run(["kill", "-9", line.split(":", 1)[0]], check=False)
    return alive


def test_a_child_outlives_a_killed_parent_when_not_tied_to_it(tmp_path):
    # The control: without the death signal the trial does see a survivor.
    assert trial(tmp_path, delay=0.05, tie=False)


def test_no_child_survives_its_parent_killed_right_after_the_fork(tmp_path):
    rng = random.Random()
    survivors = []
    for n in range(TRIALS):
        # Even trials: at once (the child is between fork and exec); odd ones: a
        # random moment within the next 3 ms (preexec, exec, the child starting).
        delay = 0.0 if n % 2 == 0 else rng.uniform(0.0, 0.003)
        survivors += trial(tmp_path, delay=delay, cli=n % 4 >= 2)
    assert survivors == []
