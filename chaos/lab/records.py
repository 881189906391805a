"""A lab as its lab.json records it, for whoever did not start it: `chaos lab
status|down`, and the next start of a lab in the same folder.

A recorded process id proves nothing on its own: the lab may be long gone
and the id reused by an unrelated process. Each process is recorded with
what proves it is ours (chaos.lab.process.ProcessIdentity: its start time
and command line, and the boot they count from); nothing is signalled, or
reported alive, unless that proof holds.

    recorded = recorded_lab(lab_dir)     # None: no lab recorded there
    recorded.running                     # some recorded process is still ours
    report = stop_recorded(lab_dir)      # stop what is ours, clean what is left

What a lab leaves when it is killed (SIGKILL, a second Ctrl-C before the
first teardown finished...) is removed by remove_leftovers(): the scratch
folder (storage, the daemons' roots, sockets, mounts), the secrets of the lab
folder (users.json, the CDN secret, the token key, the proxy's CA key, the
accounts file), and the mirror's upstream password in its config (redacted).
A listing of the mirror's storage is written first: it is evidence.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.errors import UsageError
from chaos.lab import containerd as lab_containerd
from chaos.lab import dockerd as lab_dockerd
from chaos.lab.layout import SCRATCH_OWNER, LabPaths, LabState, scratches_of
from chaos.lab.mounts import unmount_all
from chaos.lab.process import ProcessIdentity, boot_id, identify, is_ours, other_processes, stop_group
from chaos.lab.registry_config import redact_config_file

log = logging.getLogger(__name__)
_SCRATCH_NAME = re.compile(r"^hc-[0-9a-f]{8}$")


@dataclass(frozen=True)
class RecordedComponent:
    name: str
    pid: int
    alive: bool  # some process has this id now (zombies do not count)
    ours: bool  # ...and it is the very process the lab started (same boot, start time, command line)


@dataclass(frozen=True)
class RecordedLab:
    root: Path
    state: LabState
    components: tuple[RecordedComponent, ...]

    @property
    def status(self) -> str:
        """What lab.json says: starting, running, stopping or stopped."""
        return self.state.status

    @property
    def running(self) -> bool:
        """Some component the lab started still runs."""
        return any(component.ours for component in self.components)

    @property
    def stale(self) -> bool:
        """The lab did not finish its stop (it was killed): leftovers to clean."""
        return not self.running and self.status != "stopped"


def recorded_lab(lab_dir: Path) -> RecordedLab | None:
    """The lab recorded in lab_dir/lab.json, each component checked against its
    proof of identity; None when nothing is recorded there. UsageError naming
    the file when lab.json is not a lab state file."""
    paths = LabPaths(Path(lab_dir))
    if not paths.state_file.exists():
        return None
    state = LabState.load(paths.state_file)
    same_boot = bool(state.boot_id) and state.boot_id == boot_id()
    components = []
    for name, pid in state.process_groups.items():
        record = _identity(state, name)
        alive = identify(pid) is not None
        ours = alive and same_boot and record is not None and record.pid == pid and is_ours(record)
        components.append(RecordedComponent(name, pid, alive, ours))
    return RecordedLab(Path(lab_dir), state, tuple(components))


def running_lab_state(lab_dir: Path) -> LabState | None:
    """The state of the lab running in lab_dir (URLs, ports...); None when no
    lab runs there (nothing recorded, stopped, or killed)."""
    recorded = recorded_lab(lab_dir)
    return recorded.state if recorded is not None and recorded.running else None


@dataclass(frozen=True)
class StopReport:
    """What stop_recorded() did, so a caller says only what happened."""

    stopped: tuple[str, ...] = ()  # ours: signalled, and gone
    not_stopped: tuple[str, ...] = ()  # ours: signalled, and still there after SIGKILL
    already_gone: tuple[str, ...] = ()  # recorded, no longer running
    not_ours: tuple[str, ...] = ()  # the recorded id now names another process: left alone
    removed: tuple[str, ...] = ()  # leftovers removed (folders, secrets...)
    left: tuple[str, ...] = ()  # leftovers that could not be removed (still mounted...)

    @property
    def complete(self) -> bool:
        return not self.not_stopped and not self.left


def stop_recorded(lab_dir: Path) -> StopReport | None:
    """Stop the lab recorded in lab_dir: SIGTERM (then SIGKILL) each component
    proved to be ours, last started first; leave alone any recorded id that
    now names another process; then remove the leftovers and mark lab.json
    stopped. None when nothing is recorded there."""
    recorded = recorded_lab(lab_dir)
    if recorded is None:
        return None
    paths = LabPaths(Path(lab_dir))
    stopped, not_stopped, already_gone, not_ours = [], [], [], []
    for component in reversed(recorded.components):
        if component.ours:
            # dockerd and containerd stop their children first: give them the grace the lab gives them.
            grace = 10.0 if component.name in ("dockerd", "containerd") else 5.0
            gone = _stop_ours(_identity(recorded.state, component.name), grace)
            (stopped if gone else not_stopped).append(component.name)
        elif component.alive:
            not_ours.append(component.name)
            log.info("%s: pid %d is no longer the lab's process: left alone", component.name, component.pid)
        else:
            already_gone.append(component.name)
    more_stopped, removed, left = _clean(paths.root, recorded.state)
    stopped += more_stopped
    state = recorded.state
    state.status = "stopped" if not not_stopped and not left else "stopping"
    state.save(paths.state_file)
    return StopReport(tuple(stopped), tuple(not_stopped), tuple(already_gone), tuple(not_ours), tuple(removed), tuple(left))


def claim_folder(lab_dir: Path) -> list[str]:
    """Before a lab starts in lab_dir: UsageError if one runs there already;
    else remove what an earlier lab there left when it was killed (its
    processes no longer ours are left alone). Returns what was removed."""
    paths = LabPaths(Path(lab_dir))
    try:
        recorded = recorded_lab(lab_dir)
    except UsageError as exc:
        log.info("replacing %s: %s", paths.state_file, exc)
        recorded = None
    if recorded is not None and recorded.running:
        names = ", ".join(c.name for c in recorded.components if c.ours)
        raise UsageError(
            f"a lab is already running in {lab_dir} ({names}): stop it first (`chaos lab down --lab-dir {lab_dir}`)"
        )
    state = recorded.state if recorded is not None else None
    stopped, removed, left = _clean(paths.root, state)
    if left:
        raise UsageError(f"{lab_dir}: an earlier lab left {', '.join(left)}, which could not be removed: remove it first")
    if stopped or removed:
        log.info(
            "cleaned up after the lab that last ran in %s and did not stop (status %s): %s",
            lab_dir, state.status if state else "unknown", ", ".join([f"stopped {n}" for n in stopped] + removed),
        )
    return [f"stopped {n}" for n in stopped] + removed


def _clean(root: Path, state: LabState | None) -> tuple[list[str], list[str], list[str]]:
    """Stop the unrecorded processes of the lab folder root and remove its
    leftovers, in the scratch folder lab.json names and in any other whose
    owner file names root (lab.json lost or never written): (stopped, removed, left)."""
    scratches = [folder for folder in scratches_of(root) if is_scratch_of(folder, root)]
    if state is not None and state.scratch and Path(state.scratch) not in scratches:
        if is_scratch_of(Path(state.scratch), root):
            scratches.insert(0, Path(state.scratch))
        elif Path(state.scratch).exists():
            log.warning("left %s alone: lab.json names it, but it is no scratch folder of %s", state.scratch, root)
    paths = LabPaths(root)
    stopped = stop_unrecorded(paths)
    removed, left = remove_leftovers(paths, state)
    for scratch in scratches:
        scratch_paths = LabPaths(root, scratch)
        stopped += stop_unrecorded(scratch_paths)
        named = state is not None and state.scratch == str(scratch)
        more_removed, more_left = remove_leftovers(scratch_paths, state if named else None)
        removed += more_removed
        left += more_left
    return stopped, removed, left


def remove_leftovers(paths: LabPaths, state: LabState | None) -> tuple[list[str], list[str]]:
    """Remove what a lab leaves once its processes are gone: returns (removed, left)."""
    removed: list[str] = []
    left: list[str] = []
    scratch = paths.scratch
    if scratch is not None and scratch.exists():
        if paths.mirror_storage.exists():
            write_storage_listing(paths.mirror_storage, paths.mirror_listing)
        exec_root = paths.dockerd_exec_root
        if not lab_dockerd.cleanup(paths.dockerd_data_root, exec_root):
            left.append(str(exec_root))
        if not lab_containerd.cleanup(paths.containerd_scratch):
            left.append(str(paths.containerd_scratch))
        still_mounted = unmount_all([scratch])
        if still_mounted:
            left.extend(still_mounted)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
            if scratch.exists():
                left.append(str(scratch))
            else:
                removed.append(str(scratch))
    elif state is not None and not state.scratch and _is_old_exec_root(state.docker_exec_root):
        # A lab.json from before scratch folders: dockerd's exec root, /tmp/hc-*.
        if lab_dockerd.cleanup(paths.dockerd_data_root, Path(state.docker_exec_root)):
            removed.append(state.docker_exec_root)
        else:
            left.append(state.docker_exec_root)
    if redact_config_file(paths.mirror_config):
        removed.append(f"the secrets in {paths.mirror_config} (redacted)")
    for secret in paths.secret_files():
        if secret.exists():
            secret.unlink()
            removed.append(str(secret))
    return removed, left


def is_scratch_of(folder: Path, root: Path) -> bool:
    """Whether folder is a scratch folder of the lab folder root, safe to
    remove whole: named as choose_scratch names them, a real folder (not a
    link), whose owner file names root (or still empty: killed before it
    could be written). lab.json is only a file: what it names is checked."""
    folder = Path(folder)
    if not _SCRATCH_NAME.match(folder.name) or folder.is_symlink() or not folder.is_dir():
        return False
    owner = folder / SCRATCH_OWNER
    try:
        return owner.read_text().strip() == str(Path(root).resolve())
    except FileNotFoundError:
        return not any(folder.iterdir())
    except OSError:
        return False


def _is_old_exec_root(path: str) -> bool:
    folder = Path(path) if path else None
    return (folder is not None and folder.parent == Path("/tmp") and folder.name.startswith("hc-")
            and folder.is_dir() and not folder.is_symlink())


def write_storage_listing(storage: Path, listing: Path) -> Path:
    """Every file below storage with its size, one `SIZE<TAB>PATH` line each
    (paths relative to storage, sorted): what the mirror held, kept in the
    lab folder when the storage itself goes."""
    rows = []
    for folder, _, files in os.walk(storage):
        for name in files:
            path = Path(folder) / name
            try:
                size = path.lstat().st_size
            except OSError:
                continue
            rows.append((str(path.relative_to(storage)), size))
    rows.sort()
    listing.parent.mkdir(parents=True, exist_ok=True)
    total = sum(size for _, size in rows)
    with open(listing, "w") as out:
        out.write(f"# the mirror's storage when the lab stopped: {len(rows)} files, {total} bytes (SIZE<TAB>PATH)\n")
        out.writelines(f"{size}\t{path}\n" for path, size in rows)
    return listing


# -- processes no record names ------------------------------------------------

# (argument before, argument) pairs only the lab's own launchers put on a
# command line: a process carrying one is a component of this lab folder even
# if it was never recorded (a detached lab killed between starting it and
# writing lab.json). An editor or `tail` naming the same file never matches.
def _markers(paths: LabPaths) -> dict[tuple[str, str], str]:
    markers = {
        ("serve", str(paths.hub_config)): "hub",
        ("serve", str(paths.mirror_config)): "mirror",
        ("serve", str(paths.push_registry_config)): "push-registry",
        ("--accounts", str(paths.accounts_file)): "auth",
        ("--set", f"confdir={paths.proxy_confdir}"): "proxy",
        ("--config", str(paths.containerd / "config.toml")): "containerd",
    }
    if paths.scratch is not None:
        markers[("--storage", str(paths.hub_storage))] = "cdn"
        markers[("--data-root", str(paths.dockerd_data_root))] = "dockerd"
    return markers


def stop_unrecorded(paths: LabPaths) -> list[str]:
    """Stop the processes of this lab folder that carry a launcher's marker
    (see _markers); returns their names."""
    markers = _markers(paths)
    found = []
    for identity in other_processes():
        args = identity.cmdline
        for before, arg in zip(args, args[1:]):
            name = markers.get((before, arg))
            if name is not None:
                found.append((name, identity))
                break
    stopped = []
    for name, identity in found:
        if is_ours(identity):  # not gone meanwhile, its id not reused
            _stop_ours(identity, 5.0)
            stopped.append(name)
    return stopped


def _stop_ours(identity: ProcessIdentity, grace_s: float) -> bool:
    """Stop a process proved ours: its whole group when it leads one (every
    component does), else itself. True when it is gone."""
    try:
        leads = os.getpgid(identity.pid) == identity.pid
    except ProcessLookupError:
        return True
    if leads:
        stop_group(identity.pid, grace_s)
    else:
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
            try:
                os.kill(identity.pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait_s
            while time.monotonic() < end and is_ours(identity):
                time.sleep(0.05)
            if not is_ours(identity):
                break
    return not is_ours(identity)


def _identity(state: LabState, name: str) -> ProcessIdentity | None:
    data = state.processes.get(name)
    if not isinstance(data, dict):
        return None
    try:
        return ProcessIdentity.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


__all__ = [
    "RecordedComponent", "RecordedLab", "StopReport", "claim_folder", "recorded_lab", "remove_leftovers",
    "running_lab_state", "stop_recorded", "stop_unrecorded", "write_storage_listing",
]  # fmt: skip
