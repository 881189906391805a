"""Running a client program (skopeo, ctr) for one pull or push: in its own
process group, its progress (stdout) shown line by line through logging, its
--debug log (stderr) into a file the engine parses, and never past its
deadline: a run still alive `KILL_GRACE_S` after it is killed, group and all.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

from chaos.errors import EnvironmentProblem

KILL_GRACE_S = 1.0


def run_child(
    argv: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    label: str,
    timeout: float,
    logger: logging.Logger,
    engine: str,
    secret_line: str | None = None,
) -> tuple[int | None, bool]:
    """(returncode, timed_out). The program's own deadline (skopeo's
    --command-timeout, ctr's --timeout) normally ends it first, with its own
    message; this one is the backstop.

    secret_line: written to the program's terminal (a pseudo-terminal on its
    stdin), for programs that read a password from the terminal only (ctr
    --user NAME prompts for it): it never appears on a command line, in the
    environment or in a file."""
    master = slave = None
    if secret_line is not None:
        master, slave = os.openpty()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                argv, stdin=slave if slave is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=log, env=env, start_new_session=True,
            )
        except OSError as exc:
            raise EnvironmentProblem(f"engine {engine} cannot run: {argv[0]}: {exc.strerror}") from None
        finally:
            if slave is not None:
                os.close(slave)
    if master is not None:
        try:
            # Buffered by the terminal until the program reads its prompt's answer.
            os.write(master, secret_line.encode() + b"\n")
        except OSError:
            pass
    reader = threading.Thread(target=_forward, args=(proc, label, logger), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout + KILL_GRACE_S)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
        reader.join(timeout=5)
        proc.stdout.close()
        if master is not None:
            os.close(master)
    return proc.returncode, timed_out


def _forward(proc: subprocess.Popen, label: str, logger: logging.Logger) -> None:
    for raw in proc.stdout:
        line = raw.decode(errors="replace").strip()
        if line and line != "Password:":
            logger.info(f"{label} {line}")
