"""Kill trials: SIGKILL a real `chaos run` while its lab starts and while it
runs, then count what it left behind.

Each trial runs `python -m chaos run SCENARIO --run-dir DIR` (from this venv,
in its own session, with TMPDIR pointing at a folder of this script so every
scratch folder a trial makes is found) and SIGKILLs that one process:

- even trials, during the lab's start: the moment the Nth component (N
  random: hub, auth, CDN, proxy, mirror, and the engine's daemon) has been
  started (its log file appears), plus 0-20 ms;
- odd trials, mid-run: a random moment 0-3 s after the first step ended.

chaos gets no chance to tear anything down: its components must go on their
own (the death signal), and what no process can remove (the scratch folder,
users.json...) must be removed by the next start of a lab in the same folder,
which this script then runs (chaos.lab.records.claim_folder, what Lab.start
does first). It counts, per trial and in total:

- leaked processes: alive (not zombies) 15 s after the kill, whose command
  line names the run folder or the trial's scratch folders (they are killed
  by pid afterwards, so the machine is left clean either way);
- leftover folders: after that next start's cleanup, scratch folders
  (hub and mirror storage, dockerd exec and data roots, containerd roots and
  sockets) still there, and mounts below the run folder or the scratch folders;
- secrets found: files of the run folder holding a password of the
  scenario's lab users, after that cleanup (the journal included).

What the kill leaves before that cleanup (lab.json's status, users.json, the
scratch folder) and the journal's status are printed per trial, for reading.
The last line is the verdict, e.g. `0 leaked processes, 0 leftover folders,
0 secrets found`; the exit code is 0 only then.

Run from the venv:  python bench/kill_trials.py [--trials 20] [--engine builtin|docker|containerd]
                    [--scenario scenarios/hub-down.yaml] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaos.lab.layout import LabPaths, LabState  # noqa: E402
from chaos.lab.mounts import mounts_under  # noqa: E402
from chaos.lab.process import other_processes  # noqa: E402
from chaos.lab.records import claim_folder  # noqa: E402
from chaos.scenario.loader import load_scenario  # noqa: E402

START_DEADLINE_S = 120.0  # for the lab to start (or the first step to end)
GONE_DEADLINE_S = 15.0  # for the components to die after the kill
COMPONENTS_STARTED = 5  # hub, auth, cdn, proxy, mirror: the log files a start writes first (then push-registry, daemons)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--engine", default="builtin", help="the run's --engine (docker, containerd: a daemon too)")
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "hub-down.yaml")
    parser.add_argument("--keep", type=Path, help="keep the trials' folders here (default: a temporary folder, removed)")
    parser.add_argument("--seed", type=int, help="for the random moments (default: random)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    passwords = sorted({user.password for user in load_scenario(args.scenario).lab.users})
    # Short: scratch folders (and the daemons' sockets below them) are made in TMPDIR.
    base = args.keep or Path(tempfile.mkdtemp(prefix="hc-kt-", dir="/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    totals = {"leaked": 0, "folders": 0, "secrets": 0}
    # The daemon of a real engine starts last: kill during its start too.
    components = COMPONENTS_STARTED + (args.engine in ("docker", "containerd"))
    try:
        for n in range(args.trials):
            phase = "start" if n % 2 == 0 else "run"
            counts = trial(base / f"t{n:02d}", phase, args, rng, passwords, components)
            for key in totals:
                totals[key] += counts[key]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{totals['leaked']} leaked processes, {totals['folders']} leftover folders, "
          f"{totals['secrets']} secrets found")
    return 0 if not any(totals.values()) else 1


def trial(folder: Path, phase: str, args, rng: random.Random, passwords: list[str], components: int) -> dict[str, int]:
    run_dir, tmp = folder / "run", folder / "tmp"
    tmp.mkdir(parents=True)
    lab_dir = run_dir / "lab"
    env = {**os.environ, "TMPDIR": str(tmp)}
    with open(folder / "chaos.out", "w") as out:
        chaos = subprocess.Popen(
            [sys.executable, "-m", "chaos", "run", str(args.scenario), "--run-dir", str(run_dir), "--engine", args.engine],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        moment = wait_for_moment(chaos, phase, lab_dir, run_dir, rng, components)
    finally:
        # The one signal of the trial: chaos itself, nothing else.
        if chaos.poll() is None:
            chaos.send_signal(signal.SIGKILL)
        chaos.wait()
    killed = time.monotonic()
    scratches = scratch_folders(tmp, lab_dir)
    markers = [str(run_dir)] + [str(s) for s in scratches]
    while (alive := processes_naming(markers)) and time.monotonic() - killed < GONE_DEADLINE_S:
        time.sleep(0.1)
    for line in alive:
        kill(int(line.split(":", 1)[0]))
    state = LabState.load(lab_dir / "lab.json") if (lab_dir / "lab.json").exists() else None
    journal_status = read_journal_status(run_dir)
    before = {
        "lab.json": state.status if state else "absent",
        "users.json": LabPaths(lab_dir).users_file.exists(),
        "scratch": len(scratches),
        "secret files": len(files_holding(run_dir, passwords)),
    }
    # The next start of a lab in this folder: what it removes first.
    cleaned = claim_folder(lab_dir) if lab_dir.exists() else []
    left = [str(s) for s in scratch_folders(tmp, lab_dir) if s.exists()]
    left += mounts_under([run_dir, tmp])
    secrets = files_holding(run_dir, passwords)
    print(f"trial {folder.name} killed {moment}: chaos exit {chaos.returncode}; left by the kill: {before}; "
          f"journal {journal_status}; next start removed {len(cleaned)} leftovers; "
          f"after it: {len(alive)} leaked, {len(left)} folders, {len(secrets)} secrets", flush=True)
    for line in alive:
        print(f"    leaked: {line}")
    for path in left:
        print(f"    left: {path}")
    for path in secrets:
        print(f"    secret in: {path}")
    return {"leaked": len(alive), "folders": len(left), "secrets": len(secrets)}


def wait_for_moment(
    chaos: subprocess.Popen, phase: str, lab_dir: Path, run_dir: Path, rng: random.Random, components: int
) -> str:
    """Return once it is time to kill (as a description of the moment)."""
    deadline = time.monotonic() + START_DEADLINE_S
    if phase == "start":
        nth = rng.randint(1, components)
        while time.monotonic() < deadline and chaos.poll() is None:
            logs = lab_dir / "logs"
            if logs.is_dir() and len(list(logs.glob("*.log"))) >= nth:
                delay = rng.uniform(0.0, 0.02)
                time.sleep(delay)
                return f"starting the lab, after component {nth} started (+{delay * 1000:.0f} ms)"
            time.sleep(0.002)
        return f"starting the lab, component {nth} never started"
    while time.monotonic() < deadline and chaos.poll() is None:
        if steps_ended(run_dir) >= 1:
            delay = rng.uniform(0.0, 3.0)
            time.sleep(delay)
            return f"mid-run, {delay:.2f} s after the first step"
        time.sleep(0.02)
    return "mid-run, no step ever ended"


def steps_ended(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "journal.json").read_text()).get("steps", []))
    except (OSError, ValueError):
        return 0


def read_journal_status(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "journal.json").read_text()).get("status", "?")
    except (OSError, ValueError):
        return "absent"


def scratch_folders(tmp: Path, lab_dir: Path) -> list[Path]:
    """The trial's scratch folders: made in its TMPDIR, or elsewhere but owned by its lab folder."""
    found = set(tmp.glob("hc-*"))
    wanted = str(lab_dir.resolve())
    for owner in Path("/tmp").glob("hc-*/owner"):
        try:
            if owner.read_text().strip() == wanted:
                found.add(owner.parent)
        except OSError:
            continue
    return sorted(found)


def processes_naming(markers: list[str]) -> list[str]:
    found = []
    for identity in other_processes():
        cmdline = " ".join(identity.cmdline)
        if any(marker in cmdline for marker in markers):
            found.append(f"{identity.pid}: {cmdline}")
    return found


def files_holding(folder: Path, secrets: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*") if folder.exists() else []:
        try:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(secret.encode() in data for secret in secrets):
                    found.append(str(path))
        except OSError:
            continue
    return found


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
