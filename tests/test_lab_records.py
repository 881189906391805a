"""A lab as lab.json records it, for whoever did not start it: each process is
signalled or reported alive only when it is proved to be the lab's own (start
time and command line); a lab killed before it could stop is cleaned up by
stop_recorded() or by the next start in the same folder; a second Ctrl-C
during the stop does not cut the teardown short."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos.errors import UsageError
from chaos.lab.lab import Lab, recorded_lab, running_lab_state, stop_recorded
from chaos.lab.layout import LabPaths, LabState
from chaos.lab.ports import free_port
from chaos.lab.process import ManagedProcess, boot_id, identify
from chaos.lab.registry_config import push_config, write_config
from chaos.language.model import LabSpec, SeedImage, User
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import listening, processes_mentioning

pytestmark = pytest.mark.lab

PASSWORD = "wonderland-kill-trial"
SPEC = LabSpec(users=(User("alice", PASSWORD),), images=(SeedImage(parse_reference("alpine:3.19"), 50_000, layers=1),))
DEADLINE_S = 60

# A chaos-like process: starts a lab (tied to it, as `chaos run` does), says
# "ready", then waits to be killed or interrupted.
HOLDER = """
import logging, sys, time
from pathlib import Path
from chaos.lab.lab import Lab
from chaos.language.model import LabSpec, SeedImage, User
from chaos.vocab.reference import parse_reference

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="  .. %(message)s")
spec = LabSpec(users=(User("alice", sys.argv[2]),), images=(SeedImage(parse_reference("alpine:3.19"), 50_000, layers=1),))
lab = Lab(spec, Path(sys.argv[1]))
try:
    with lab:
        print("ready", flush=True)
        time.sleep(120)
except KeyboardInterrupt:
    print(f"interrupted; stopped={lab.stopped}", flush=True)
    sys.exit(130)
"""



def hold_lab(root: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), PASSWORD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    line = holder.stdout.readline()
    if line.strip() != "ready":
        holder.kill()
        raise AssertionError(f"the lab did not start: {line} {holder.stderr.read()}")
    return holder


def wait_for(check, what: str, deadline_s: float = DEADLINE_S):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if (value := check()):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {deadline_s}s")


def files_mentioning(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_recorded_pid_now_naming_another_process_is_neither_alive_nor_stopped(tmp_path):
    paths = LabPaths(tmp_path)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a group of its own, as components have
    try:
        # Until the exec completes the kernel shows this process's command line, then an empty one for a moment.
        mine = wait_for(lambda: (found := identify(stranger.pid)) and found.cmdline == ("sleep", "60") and found,
                        "sleep exec'd", 10)
        # What a lab recorded long ago under the id the stranger now has: another start time.
        state = LabState(root=str(tmp_path), status="running", boot_id=boot_id(),
                         process_groups={"mirror": stranger.pid},
                         processes={"mirror": {**mine.to_dict(), "start_time": mine.start_time - 100}})
        state.save(paths.state_file)
        recorded = recorded_lab(tmp_path)
        assert [(c.name, c.alive, c.ours) for c in recorded.components] == [("mirror", True, False)]
        assert not recorded.running and recorded.stale
        assert running_lab_state(tmp_path) is None
        report = stop_recorded(tmp_path)
        assert report.not_ours == ("mirror",) and report.stopped == () and report.complete
        assert stranger.poll() is None  # untouched
        # And a record with the right start time but another command line is not ours either.
        state.processes["mirror"] = {**mine.to_dict(), "cmdline": ["docker-registry", "serve", "x.yml"]}
        state.save(paths.state_file)
        assert not recorded_lab(tmp_path).running
        stop_recorded(tmp_path)
        assert stranger.poll() is None
        # A record from another boot proves nothing, whatever else matches.
        state.processes["mirror"], state.boot_id = mine.to_dict(), "another-boot"
        state.save(paths.state_file)
        assert not recorded_lab(tmp_path).running
        # With the right proof it is ours, and stopped.
        state.boot_id = boot_id()
        state.save(paths.state_file)
        assert recorded_lab(tmp_path).running
        assert stop_recorded(tmp_path).stopped == ("mirror",)
        stranger.wait(timeout=10)  # (stop_group reaps it: no exit status to read)
        assert identify(stranger.pid) is None
    finally:
        stranger.kill()
        stranger.wait()


def test_nothing_recorded_and_a_file_that_is_not_a_lab_state(tmp_path):
    assert recorded_lab(tmp_path) is None and stop_recorded(tmp_path) is None
    (tmp_path / "lab.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match=r"lab\.json: not a lab state file"):
        recorded_lab(tmp_path)


def test_a_killed_lab_leaves_no_process_and_the_next_start_cleans_what_it_left(tmp_path):
    root = tmp_path / "lab"
    holder = hold_lab(root)
    state = LabState.load(LabPaths(root).state_file)
    ports, scratch = list(state.ports.values()), Path(state.scratch)
    assert scratch.is_dir() and (root / "users.json").exists()
    holder.kill()  # SIGKILL: no teardown at all
    holder.wait(timeout=10)
    # The death signal takes every component down...
    wait_for(lambda: not processes_mentioning(str(root)) and not processes_mentioning(str(scratch)), "components gone")
    assert not listening(ports)
    # ...and what no process can remove stays until the next start.
    recorded = recorded_lab(root)
    assert recorded.status == "running" and recorded.stale
    assert {(c.alive, c.ours) for c in recorded.components} == {(False, False)}
    assert scratch.exists() and files_mentioning(root, PASSWORD) == [str(root / "users.json")]

    with Lab(SPEC, root) as lab:
        assert not scratch.exists()  # the killed lab's scratch folder, storage and all
        assert lab.state.scratch != str(scratch)
    assert lab.stopped
    assert files_mentioning(root, PASSWORD) == [] and not Path(lab.state.scratch).exists()


def test_stop_recorded_stops_a_lab_left_running_and_removes_its_leftovers(tmp_path):
    lab = Lab(SPEC, tmp_path, detached=True)
    with lab:
        lab.leave_running()
    ports, scratch = list(lab.state.ports.values()), Path(lab.state.scratch)
    try:
        recorded = recorded_lab(tmp_path)
        assert recorded.running and recorded.status == "running"
        assert [c.name for c in recorded.components] == ["hub", "auth", "cdn", "proxy", "mirror"]
        assert all(c.alive and c.ours for c in recorded.components)
        assert running_lab_state(tmp_path).mirror_url == lab.state.mirror_url
        # A second lab in the same folder is refused while this one runs.
        with pytest.raises(UsageError, match=f"a lab is already running in {tmp_path}"):
            Lab(SPEC, tmp_path).start()
        assert recorded_lab(tmp_path).running  # and the refusal touched nothing
    finally:
        report = stop_recorded(tmp_path)
    assert report.stopped == ("mirror", "proxy", "cdn", "auth", "hub") and report.complete
    assert str(scratch) in report.removed and str(tmp_path / "users.json") in report.removed
    assert not processes_mentioning(str(tmp_path)) and not listening(ports) and not scratch.exists()
    assert recorded_lab(tmp_path).status == "stopped" and running_lab_state(tmp_path) is None
    assert files_mentioning(tmp_path, PASSWORD) == []
    lab.stop()  # the Lab object itself finds nothing left


def test_a_component_started_but_never_recorded_is_found_by_its_launcher_arguments(tmp_path):
    # A detached lab killed between starting a component and writing lab.json.
    paths = LabPaths(tmp_path)
    port = free_port()
    write_config(push_config(tmp_path / "storage", port), paths.hub_config)
    orphan = subprocess.Popen([shutil.which("docker-registry"), "serve", str(paths.hub_config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    bystander = subprocess.Popen(["tail", "-f", str(paths.hub_config)], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening([port]), "the orphan registry listening", 10)
        with Lab(SPEC, tmp_path) as lab:
            assert orphan.poll() is not None and not listening([port])
            assert bystander.poll() is None  # names the same file, but is not a launcher's command line
        assert lab.stopped
    finally:
        for process in (orphan, bystander):
            process.kill()
            process.wait()


def test_a_second_ctrl_c_during_the_stop_does_not_cut_the_teardown_short(tmp_path):
    root = tmp_path / "lab"
    holder = hold_lab(root)
    state = LabState.load(LabPaths(root).state_file)
    try:
        holder.send_signal(signal.SIGINT)
        wait_for(lambda: LabState.load(LabPaths(root).state_file).status == "stopping", "teardown begun", 10)
        holder.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
        out, err = holder.communicate(timeout=DEADLINE_S)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 130, err
    assert out.strip().splitlines()[-1] == "interrupted; stopped=True"
    assert "still stopping the lab: its teardown finishes first" in err
    assert LabState.load(LabPaths(root).state_file).status == "stopped"
    assert not processes_mentioning(str(root)) and not Path(state.scratch).exists()
    assert not listening(state.ports.values())
    assert files_mentioning(root, PASSWORD) == []


def test_a_signal_during_a_plain_stop_is_raised_once_the_teardown_is_done(tmp_path):
    with Lab(SPEC, tmp_path) as lab:
        lab.leave_running()
    scratch = Path(lab.state.scratch)
    previous = signal.getsignal(signal.SIGINT)
    original_stop = lab.components["proxy"].stop

    def stop_with_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the teardown
        return original_stop(*args, **kwargs)

    lab.components["proxy"].stop = stop_with_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        lab.stop()
    assert lab.stopped and not scratch.exists() and not processes_mentioning(str(tmp_path))
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored


def test_a_started_process_is_recorded_with_its_own_command_line(tmp_path):
    # Popen returns before the kernel shows the new command line: the record must not be taken too early.
    for n in range(20):
        process = ManagedProcess("quick", ["sleep", "30", str(n)], tmp_path / "quick.log", tie_to_parent=n % 2 == 0)
        with process:
            process.start()
            assert process.identity == identify(process.pid)
            assert process.identity.cmdline == ("sleep", "30", str(n))


def test_lab_json_is_written_in_start_order(tmp_path):
    with Lab(SPEC, tmp_path) as lab:
        data = json.loads(LabPaths(tmp_path).state_file.read_text())
        assert list(data["process_groups"]) == ["hub", "auth", "cdn", "proxy", "mirror"]
        assert list(data["processes"]) == list(data["process_groups"])
        assert data["processes"]["hub"]["cmdline"][1:] == ["serve", str(LabPaths(tmp_path).hub_config)]
        assert data["boot_id"] == boot_id() and data["scratch"] == lab.state.scratch


def test_a_scratch_folder_no_lab_json_names_is_found_by_its_owner_file(tmp_path):
    lab = Lab(SPEC, tmp_path, detached=True)
    with lab:
        lab.leave_running()
    scratch = Path(lab.state.scratch)
    # What a `lab down` that knows nothing of scratch folders leaves: the
    # processes stopped, lab.json removed, the scratch folder in place.
    for process in lab.components.values():
        process.stop()
    LabPaths(tmp_path).state_file.unlink()
    assert (scratch / "owner").read_text().strip() == str(tmp_path.resolve())
    with Lab(SPEC, tmp_path) as again:
        assert not scratch.exists()
    assert again.stopped and not Path(again.state.scratch).exists()


@pytest.mark.parametrize("named", ["/tmp", "elsewhere/hc-0123abcd", "link/hc-0123abcd", "foreign/hc-0123abcd"])
def test_a_folder_lab_json_names_is_removed_only_if_it_is_this_labs_scratch(tmp_path, named):
    folder = Path(named) if named.startswith("/") else tmp_path / named
    if named.startswith("elsewhere"):
        folder.mkdir(parents=True)
        (folder / "precious").write_text("not the lab's")  # no owner file: not a scratch folder
    elif named.startswith("link"):
        (tmp_path / "target").mkdir()
        (tmp_path / "target" / "precious").write_text("not the lab's")
        folder.parent.mkdir()
        folder.symlink_to(tmp_path / "target")
    elif named.startswith("foreign"):
        folder.mkdir(parents=True)
        (folder / "owner").write_text("/some/other/lab\n")  # another lab's scratch folder
    root = tmp_path / "lab"
    root.mkdir()
    LabState(root=str(root), status="running", scratch=str(folder), boot_id=boot_id()).save(LabPaths(root).state_file)
    report = stop_recorded(root)
    assert str(folder) not in report.removed and folder.exists()
    assert report.complete and recorded_lab(root).status == "stopped"
