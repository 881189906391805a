"""How long the embedded lab takes to come up (to ready: every component
answering, images seeded) and to go down, without dockerd; and where the time
goes.

Two ways, each `--runs` times:
- in-process, `with Lab(spec, root)` (what `chaos run` does): up = __enter__,
  down = __exit__; each component's start-to-ready time, the seeding and the
  rest are timed by wrapping the Lab's own steps (nothing in chaos/lab changes);
- the CLI, `python -m chaos lab up` and `python -m chaos lab down` as
  subprocesses (interpreter start and imports included).

The lab is the one `chaos lab up` starts by default: the shipped hub-down
scenario's lab section (four images, 15 MB, a push registry).

Run from the venv:  python bench/lab_up.py [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from chaos.lab.lab import Lab
from chaos.lab.process import ManagedProcess
from chaos.scenario.loader import load_scenario
from chaos.shipped import shipped_scenario

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120


@contextmanager
def _timed_steps(timings: dict[str, float]):
    """Time the Lab's own steps: every component from its start until it was
    seen ready (components start side by side, so these overlap), the seeding."""
    original_launch, original_wait, original_seed = Lab._launch, ManagedProcess.wait_ready, Lab._seed
    started: dict[str, float] = {}

    def launch(self, spec, **options):
        started[spec.name] = time.perf_counter()
        return original_launch(self, spec, **options)

    def wait_ready(self, check, deadline_s):
        try:
            return original_wait(self, check, deadline_s)
        finally:
            if self.name in started:
                timings[self.name] = time.perf_counter() - started.pop(self.name)

    def seed(self):
        began = time.perf_counter()
        try:
            return original_seed(self)
        finally:
            timings["seed"] = time.perf_counter() - began

    Lab._launch, ManagedProcess.wait_ready, Lab._seed = launch, wait_ready, seed
    try:
        yield
    finally:
        Lab._launch, ManagedProcess.wait_ready, Lab._seed = original_launch, original_wait, original_seed


def in_process(spec, runs: int) -> dict:
    ups, downs, steps = [], [], []
    for _ in range(runs):
        timings: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="bench-lab-") as folder, _timed_steps(timings):
            started = time.perf_counter()
            lab = Lab(spec, Path(folder) / "lab")
            lab.__enter__()
            up = time.perf_counter() - started
            started = time.perf_counter()
            lab.__exit__(None, None, None)
            downs.append(time.perf_counter() - started)
        assert lab.stopped, "the lab did not stop cleanly"
        ups.append(up)
        steps.append(timings)
    names = list(steps[0])
    return {"up_s": ups, "down_s": downs, "median_up_s": statistics.median(ups), "median_down_s": statistics.median(downs),
            "median_steps_s": {name: statistics.median(s.get(name, 0.0) for s in steps) for name in names}}


def via_cli(runs: int) -> dict:
    ups, downs = [], []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-lab-cli-") as folder:
            lab_dir = str(Path(folder) / "lab")
            for verb, into in (("up", ups), ("down", downs)):
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "chaos", "lab", verb, "--lab-dir", lab_dir],
                                      cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
                into.append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise RuntimeError(f"chaos lab {verb} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return {"up_s": ups, "down_s": downs, "median_up_s": statistics.median(ups), "median_down_s": statistics.median(downs)}


def report(figures: dict) -> str:
    inproc, cli = figures["in_process"], figures["cli"]
    lines = [f"lab up to ready (Lab context manager, no dockerd), {len(inproc['up_s'])} runs: median"
             f" {inproc['median_up_s']:.2f} s (" + " ".join(f"{t:.2f}" for t in inproc["up_s"]) + ")",
             f"lab down: median {inproc['median_down_s']:.2f} s",
             "each step, start to ready (they overlap; median s): " + ", ".join(f"{k} {v:.2f}" for k, v in inproc["median_steps_s"].items()),
             f"`python -m chaos lab up`: median {cli['median_up_s']:.2f} s; `lab down`: {cli['median_down_s']:.2f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    spec = load_scenario(shipped_scenario("hub-down")).lab
    figures = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "load_average_1min_before": os.getloadavg()[0],
               "images": len(spec.images), "in_process": in_process(spec, args.runs), "cli": via_cli(args.runs)}
    figures["load_average_1min_after"] = os.getloadavg()[0]
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
