"""Wall time of the flagship scenario, `chaos run hub-down.yaml`, per engine.

Each engine's run is the whole command as a user types it (interpreter start,
lab up, every step, lab down), in a fresh run folder, `--runs` times; an
engine whose run does not pass (exit code other than 0) is reported with its
exit code and the last line it printed, not timed. The steps' own durations
come from the run's journal.json.

Run from the venv:  python bench/scenario_wall.py [--engines builtin,docker,skopeo,containerd] [--runs 1]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("builtin", "docker", "skopeo", "containerd")
TIMEOUT_S = 900


def one_run(engine: str, scenario: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-scenario-{engine}-") as folder:
        run_dir = Path(folder) / "run"
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "chaos", "run", scenario, "--engine", engine, "--run-dir", str(run_dir)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"engine": engine, "exit": None, "wall_s": None, "last_line": f"no end within {TIMEOUT_S} s"}
        wall = time.perf_counter() - started
        steps = {}
        journal = run_dir / "journal.json"
        if journal.exists():
            data = json.loads(journal.read_text())
            for step in data.get("steps", []):
                start, end = step.get("started"), step.get("ended")
                if isinstance(start, (int, float)) and isinstance(end, (int, float)):
                    steps[step.get("name", "?")] = round(end - start, 3)
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        return {"engine": engine, "exit": done.returncode, "wall_s": wall, "steps_s": steps,
                "last_line": lines[-1] if lines else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "hub-down.yaml"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    figures = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "load_average_1min_before": os.getloadavg()[0],
               "scenario": Path(args.scenario).name, "engines": {}}
    for engine in engines:
        runs = [one_run(engine, args.scenario) for _ in range(args.runs)]
        passed = [r["wall_s"] for r in runs if r["exit"] == 0]
        figures["engines"][engine] = {"runs": runs, "passed": len(passed),
                                      "median_wall_s": statistics.median(passed) if passed else None}
        text = f"{engine:10} " + (f"{statistics.median(passed):6.1f} s" if passed else "  not timed")
        failed = [r for r in runs if r["exit"] != 0]
        if failed:
            text += f"  ({len(failed)} of {len(runs)} did not pass: exit {failed[0]['exit']}: {failed[0]['last_line'][:160]})"
        print(text, flush=True)
    figures["load_average_1min_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
