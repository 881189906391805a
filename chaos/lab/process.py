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
import functools
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from chaos.errors import ComponentFailed, EnvironmentProblem, PortInUse
from chaos.lab.ports import is_listening, listening_socket_inodes

log = logging.getLogger(__name__)
READY_POLL_S = 0.03
"""How often a starting component's readiness is asked: most answer within tens
of milliseconds, and each poll interval wasted delays the lab."""
# How long a child that answers on a port /proc does not show it holding must
# stay alive before it is believed (ManagedProcess.wait_ready): a child that
# lost its port to another program exits well within it (mitmdump ~1 s, Go and
# Python programs at once).
OWNERSHIP_GRACE_S = 3.0
_PR_SET_PDEATHSIG = 1
_EXIT_ORPHANED = 70  # what a child whose parent died before it could arm its death signal exits with

try:
    # Loaded once, in the parent: the child must arm its death signal at once
    # after the fork, not after a library load.
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc: no death signal, the lab's own teardown still runs
    _prctl = None


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child before exec: SIGTERM when chaos dies, and a session of its own.

    The death signal is the last-resort cleanup for a chaos process that is
    SIGKILLed and so never runs its own teardown. A parent that dies after
    the fork but before the signal is armed is never noticed by the kernel,
    so the child then checks that its parent is still the one that forked it,
    and exits at once if not. Linux sends the signal when the *thread* that
    forked the child ends: start components from a thread that lives as long
    as the lab (the runner restarts them on its main thread).
    """
    # The parent's own SIGTERM handler (the CLI turns SIGTERM into
    # KeyboardInterrupt) would catch the death signal here and lose it at exec.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(_EXIT_ORPHANED)
    os.setsid()


@dataclass(frozen=True)
class ProcessIdentity:
    """What proves a process id still names the process the lab started: the
    kernel's start time of that pid (clock ticks after boot, /proc/PID/stat
    field 22) and its command line as the kernel shows it (a script's
    interpreter included). A pid reused by another process differs in both."""

    pid: int
    start_time: int
    cmdline: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"pid": self.pid, "start_time": self.start_time, "cmdline": list(self.cmdline)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ProcessIdentity:
        return cls(int(data["pid"]), int(data["start_time"]), tuple(str(arg) for arg in data["cmdline"]))


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of a live process; None when there is none (or only a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ")".
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return ProcessIdentity(pid, int(fields[19]), tuple(arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]))


def other_processes() -> Iterator[ProcessIdentity]:
    """The identity of every live process but this one (zombies, and those
    gone while the list was read, left out)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            identity = identify(int(entry.name))
            if identity is not None:
                yield identity


def _identity_after_exec(pid: int, deadline_s: float = 2.0) -> ProcessIdentity | None:
    """The identity of a child that has just exec'd. Popen returns as soon as
    the exec began, before the kernel shows the new command line (it reads
    empty for a moment): wait, briefly, for it. None if the child is gone."""
    retrying = Retrying(
        stop=stop_after_delay(deadline_s),
        wait=wait_fixed(0.002),
        retry=retry_if_result(lambda found: found is not None and not found.cmdline),
    )
    try:
        return retrying(identify, pid)
    except RetryError:
        return None


def is_ours(record: ProcessIdentity) -> bool:
    """Whether record's pid still runs the very process recorded (same start time and command line)."""
    current = identify(record.pid)
    return current is not None and current == record


def boot_id() -> str:
    """This boot's id: process start times count from boot, so a record from another boot proves nothing."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def read_log(path: Path, since: int = 0) -> str:
    """A log's text from byte `since` on (where one start of a component began
    writing to a log that earlier starts wrote to); OSError if unreadable."""
    with open(path, "rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace")


def telling_line(path: Path, since: int = 0) -> str | None:
    """The one line of a log (from byte `since`) that best says why a program
    ended: the cause of a Go panic, else its last fatal or error line, else its last line."""
    try:
        lines = [line.strip() for line in read_log(path, since).splitlines() if line.strip()]
    except OSError:
        return None
    for marker in ("panic:", "level=fatal", "level=error"):
        found = [line for line in lines if marker in line]
        if found:
            return found[-1][:300]
    return lines[-1][:300] if lines else None


def log_tail(path: Path, lines: int = 15, since: int = 0) -> str:
    try:
        text = read_log(path, since)
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
        ports: Sequence[int] = (),
    ):
        """ports: where it listens. It is ready only once its own process group
        holds each (a program that took one first would answer the probe)."""
        self.name = name
        self.ports = tuple(ports)
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.tie_to_parent = tie_to_parent
        self.proc: subprocess.Popen | None = None
        self.identity: ProcessIdentity | None = None
        self.log_offset = 0  # where this start's output begins in its log (earlier starts append there too)

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
            self.log_offset = log.tell()
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
                    preexec_fn=functools.partial(_die_with_parent, os.getpid()) if self.tie_to_parent else None,
                    start_new_session=not self.tie_to_parent,
                )
            except OSError as exc:
                raise EnvironmentProblem(f"{self.name}: cannot start {self.argv[0]}: {exc.strerror}") from exc
        self.identity = _identity_after_exec(self.proc.pid) or ProcessIdentity(self.proc.pid, -1, tuple(self.argv))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, check: Callable[[], bool], deadline_s: float) -> None:
        """Poll check() until it is true; fail with the log tail if the child dies
        or the deadline passes. With ports, check() counts only once the
        child's own group holds each port's listening socket: a program that
        took the port first would answer it too, and while /proc shows another
        process holding it the child is not ready. Where /proc shows nobody (a
        /proc without the socket tables, a holder whose descriptors are
        hidden), a child still alive OWNERSHIP_GRACE_S after its first answer
        is taken at its word: one that lost its port dies sooner."""
        first_answer: float | None = None
        impostors: dict[int, list[int]] = {}

        def attempt() -> bool:
            nonlocal first_answer
            if not self.alive():
                raise self._early_death()
            try:
                if not check():
                    return False
            except Exception:  # noqa: BLE001 - any failure of the probe means "not yet"
                return False
            unproved = [port for port in self.ports if not group_listens_on(self.proc.pid, port)]
            if not unproved:
                return True
            ours = set(group_members(self.proc.pid))
            held = {port: others for port in unproved if (others := sorted(set(port_holders(port)) - ours))}
            if held:  # proved someone else's, for now: not ready (the child should die of it soon)
                impostors.update(held)
                return False
            first_answer = first_answer or time.monotonic()
            if time.monotonic() - first_answer < OWNERSHIP_GRACE_S:
                return False
            log.warning("%s: /proc shows no process listening on port %s; %s has answered there for %gs and is "
                        "taken at its word", self.name, ", ".join(map(str, unproved)), self.name, OWNERSHIP_GRACE_S)
            return True

        retrying = Retrying(
            stop=stop_after_delay(deadline_s),
            wait=wait_fixed(READY_POLL_S),
            retry=retry_if_result(lambda ready: not ready),
            reraise=True,  # a ComponentFailed from attempt() is not retried, it propagates
        )
        try:
            retrying(attempt)
        except RetryError:
            held = "".join(f"; port {port} answers, but process {', '.join(map(str, pids))} holds it, not {self.name}"
                           for port, pids in impostors.items())
            raise ComponentFailed(
                f"{self.name} was not ready within {deadline_s:g}s{held}; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path, since=self.log_offset)}"
            ) from None

    def _early_death(self) -> ComponentFailed:
        """Why the child died before it was ready: PortInUse when its log (this
        start's part) says a port was in use and another program listens on
        one of its ports now, else ComponentFailed."""
        code = self.proc.returncode if self.proc else None
        tail = log_tail(self.log_path, since=self.log_offset)
        message = f"{self.name} exited with code {code} before it was ready; last lines of {self.log_path}:\n{tail}"
        # distribution, mitmproxy and Python all say it in these words; the
        # listener check keeps out a port the lab did not choose (a debug
        # address in the user's own mirror config), which no new choice mends.
        taken = [port for port in self.ports if is_listening(port)]
        if taken and "address already in use" in tail.lower():
            return PortInUse(message, self.name, taken[0])
        return ComponentFailed(message)

    def stop(self, grace_s: float = 5.0) -> bool:
        """SIGTERM the whole group, SIGKILL what is left after grace_s; True
        when nothing of it is left."""
        if self.proc is None:
            return True
        gone = stop_group(self.proc.pid, grace_s)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            return False
        return gone


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
    if not Path("/proc").is_dir():
        return True
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """The pids of the group's live processes (zombies left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ")".
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _holds(pid: int, sockets: set[str]) -> bool:
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor) in sockets:
                return True
        except OSError:
            continue
    return False


def port_holders(port: int, among: Iterable[int] | None = None) -> list[int]:
    """The pids (of `among`, default every process) holding a socket that
    listens on port, as far as /proc shows them: [] when it shows none (no
    listener, socket tables unreadable, or the holder's descriptors hidden)."""
    inodes = listening_socket_inodes(port)
    if not inodes:
        return []
    sockets = {f"socket:[{inode}]" for inode in inodes}
    pids = among if among is not None else (int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit())
    return [pid for pid in pids if _holds(pid, sockets)]


def group_listens_on(pgid: int, port: int) -> bool:
    """Whether a process of the group holds a socket listening on port."""
    return bool(port_holders(port, group_members(pgid)))


def stop_group(pgid: int, grace_s: float = 5.0) -> bool:
    """Terminate a process group (whose leader is pgid): SIGTERM, SIGKILL what
    is left after grace_s. True when nothing of the group is left. Signal only
    a group proved to be ours (is_ours on its leader's recorded identity)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    end = time.monotonic() + grace_s
    while time.monotonic() < end:
        _reap(pgid)
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        _reap(pgid)
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


def _reap(pid: int) -> None:
    # Our own child stays a zombie (and keeps its group "alive") until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
