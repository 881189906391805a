"""Run folders: never an earlier run's, and runs a kill cut short found and marked."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

from chaos.journal import Journal
from chaos.lab.process import boot_id, identify
from chaos.runner.run_folders import mark_killed_runs, new_run_folder, own_process_proof, settle_if_killed


def running_journal(folder, pid, pid_proof=None):
    folder.mkdir(parents=True)
    journal = Journal(scenario={"name": "hub-down"}, run_dir=str(folder), pid=pid, pid_proof=pid_proof or {})
    journal.write(folder / "journal.json")
    return folder / "journal.json"


def proof_of(pid, **changes):
    return {"start_time": identify(pid).start_time, "boot_id": boot_id(), **changes}


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


def test_a_pid_given_to_a_later_process_does_not_keep_a_run_alive(tmp_path):
    # The journal's process started earlier (or before a reboot) than the one now holding its pid.
    later = started(["python3", "-c", "import time; time.sleep(30)", "chaos"])  # even one that says chaos
    try:
        for name, proof in (("earlier", proof_of(later.pid, start_time=identify(later.pid).start_time - 100)),
                            ("other-boot", proof_of(later.pid, boot_id="another-boot"))):
            path = running_journal(tmp_path / "runs" / name, later.pid, proof)
            assert settle_if_killed(path, Journal.load(path)).status == "killed"
            assert Journal.load(path).error == f"the run's process ({later.pid}) ended before the run did: it was killed"
    finally:
        later.kill()
        later.wait(timeout=5)


def test_without_a_proof_a_pid_of_another_program_does_not_keep_a_run_alive(tmp_path):
    other = started(["sleep", "30"])
    try:
        path = running_journal(tmp_path / "runs" / "b", other.pid)
        assert settle_if_killed(path, Journal.load(path)).status == "killed"
    finally:
        other.kill()
        other.wait(timeout=5)


def test_runs_still_going_and_finished_runs_are_left_alone(tmp_path):
    alive = started(["sleep", "30"])  # the proof, not the command line, says it is the run's process
    legacy = started(["python3", "-c", "import time; time.sleep(30)", "chaos"])  # no proof: its command line says chaos
    try:
        running = running_journal(tmp_path / "runs" / "alive", alive.pid, proof_of(alive.pid))
        unproven = running_journal(tmp_path / "runs" / "legacy", legacy.pid)
        done_folder = tmp_path / "runs" / "done"
        done_folder.mkdir()
        Journal(scenario={"name": "x"}, status="completed", pid=dead_pid()).write(done_folder / "journal.json")
        assert mark_killed_runs(tmp_path / "runs") == []
        assert Journal.load(running).status == "running" and Journal.load(unproven).status == "running"
    finally:
        for child in (alive, legacy):
            child.kill()
            child.wait(timeout=5)


def test_a_run_records_what_proves_its_process(tmp_path):
    proof = own_process_proof()
    assert proof == proof_of(os.getpid())
    journal = Journal(scenario={"name": "x"}, pid_proof=proof)
    journal.write(tmp_path / "journal.json")
    assert Journal.load(tmp_path / "journal.json").pid_proof == proof


def test_a_new_run_folder_never_reuses_an_earlier_ones_name(tmp_path):
    now = datetime(2026, 11, 29, 20, 0, 0)
    first = new_run_folder(tmp_path, "hub-down", now)
    first.mkdir()
    second = new_run_folder(tmp_path, "hub-down", now)
    assert first.name == "20261129-200000-hub-down" and second.name == "20261129-200000-hub-down-2"
