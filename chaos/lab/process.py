"""A lab component as a child process: started in its own session, waited for
with a readiness check and a deadline, stopped with its whole process group.

Shaped after mirakuru: a component that dies early is reported with the tail of
its log, stop() is safe to call any number of times, and a with-block stops
the process however it ends:

    with ManagedProcess("hub", argv, log_path) as hub:
        hub.start()
        hub.wait_ready(check, deadline_s=30)
        ...
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from chaos.errors import ComponentFailed, EnvironmentProblem

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: new session, and SIGTERM when chaos dies.

    The death signal is the last-resort cleanup for a chaos process that is
    SIGKILLed and so never runs its own teardown. Linux sends it when the
    *thread* that forked the child ends: start components from a thread that
    lives as long as the lab (the runner restarts them on its main thread).
    """
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    all_lines = text.strip().splitlines()
    tail = all_lines[-lines:]
    # A Go panic's cause sits above its goroutine dump: bring it into view.
    panics = [line for line in all_lines if line.startswith("panic:")]
    if panics and panics[-1] not in tail:
        tail = [panics[-1], "..."] + tail
    return "\n".join("    " + line for line in tail) or "    (log is empty)"


def require_binary(name: str, hint: str) -> str:
    """Absolute path of an executable, or EnvironmentProblem saying how to get it."""
    path = shutil.which(name) if not os.path.isabs(name) else (name if os.access(name, os.X_OK) else None)
    if not path:
        raise EnvironmentProblem(f"{name} not found: {hint}")
    return path


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        tie_to_parent: bool = True,
    ):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.tie_to_parent = tie_to_parent
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> Self:
        # Not started here: the caller starts it, and may note its pid (a state
        # file for another process to find) before waiting for it to be ready.
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    # setsid happens in preexec (with the death signal) when tied,
                    # otherwise Popen does it: either way a group of its own.
                    preexec_fn=_die_with_parent if self.tie_to_parent else None,
                    start_new_session=not self.tie_to_parent,
                )
            except OSError as exc:
                raise EnvironmentProblem(f"{self.name}: cannot start {self.argv[0]}: {exc.strerror}") from exc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, check: Callable[[], bool], deadline_s: float) -> None:
        """Poll check() until it is true; fail with the log tail if the child dies
        or the deadline passes."""

        def attempt() -> bool:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ComponentFailed(
                    f"{self.name} exited with code {code} before it was ready; "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                return bool(check())
            except Exception:  # noqa: BLE001 - any failure of the probe means "not yet"
                return False

        retrying = Retrying(
            stop=stop_after_delay(deadline_s),
            wait=wait_fixed(0.1),
            retry=retry_if_result(lambda ready: not ready),
            reraise=True,  # a ComponentFailed from attempt() is not retried, it propagates
        )
        try:
            retrying(attempt)
        except RetryError:
            raise ComponentFailed(
                f"{self.name} was not ready within {deadline_s:g}s; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            ) from None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after grace_s."""
        if self.proc is None:
            return
        stop_group(self.proc.pid, grace_s)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs. Zombies do not count: a
    detached lab's children are reaped by whoever inherited them (and some
    containers' init never does), but a zombie holds no port and no file."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ")".
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(pgid: int, grace_s: float = 5.0) -> None:
    """Terminate a process group (whose leader is pgid); used by stop() and by
    `chaos lab down`, which only knows the ids from the lab's state file."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + grace_s
    while time.monotonic() < end:
        _reap(pgid)
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + 2.0
    while time.monotonic() < end and group_alive(pgid):
        _reap(pgid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    # Our own child stays a zombie (and keeps its group "alive") until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
