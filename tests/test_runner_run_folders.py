"""Run folders: never an earlier run's, and runs a kill cut short found and marked."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

from chaos.journal import Journal
from chaos.runner.run_folders import mark_killed_runs, new_run_folder, process_is_chaos, settle_if_killed


def running_journal(folder, pid):
    folder.mkdir(parents=True)
    journal = Journal(scenario={"name": "hub-down"}, run_dir=str(folder), pid=pid)
    journal.write(folder / "journal.json")
    return folder / "journal.json"


def started(argv):
    """A child seen running argv: until its exec completes, /proc shows this
    process's command line in the child's place. (Its arguments are compared:
    a launcher such as pyenv's may rewrite the program's own name.)"""
    child = subprocess.Popen(argv)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")[1:-1] != [a.encode() for a in argv[1:]]:
        assert time.monotonic() < deadline, f"{argv} not running after 10 s"
        time.sleep(0.005)
    return child


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait(timeout=5)
    return child.pid


def test_a_running_journal_whose_process_is_gone_is_marked_killed(tmp_path):
    path = running_journal(tmp_path / "runs" / "a", dead_pid())
    assert mark_killed_runs(tmp_path / "runs") == [path]
    journal = Journal.load(path)
    assert journal.status == "killed" and "killed" in journal.error


def test_a_recycled_pid_of_another_program_does_not_keep_a_run_alive(tmp_path):
    other = started(["sleep", "30"])
    try:
        assert not process_is_chaos(other.pid)
        path = running_journal(tmp_path / "runs" / "b", other.pid)
        assert settle_if_killed(path, Journal.load(path)).status == "killed"
    finally:
        other.kill()
        other.wait(timeout=5)


def test_runs_still_going_and_finished_runs_are_left_alone(tmp_path):
    alive = started(["python3", "-c", "import time; time.sleep(30)", "chaos"])  # its command line says chaos
    try:
        running = running_journal(tmp_path / "runs" / "alive", alive.pid)
        done_folder = tmp_path / "runs" / "done"
        done_folder.mkdir()
        Journal(scenario={"name": "x"}, status="completed", pid=dead_pid()).write(done_folder / "journal.json")
        assert mark_killed_runs(tmp_path / "runs") == []
        assert Journal.load(running).status == "running"
    finally:
        alive.kill()
        alive.wait(timeout=5)


def test_a_new_run_folder_never_reuses_an_earlier_ones_name(tmp_path):
    now = datetime(2026, 11, 29, 20, 0, 0)
    first = new_run_folder(tmp_path, "hub-down", now)
    first.mkdir()
    second = new_run_folder(tmp_path, "hub-down", now)
    assert first.name == "20261129-200000-hub-down" and second.name == "20261129-200000-hub-down-2"
