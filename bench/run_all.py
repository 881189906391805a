"""Run the benchmarks and rewrite their figures in docs/benchmarks.md.

    python bench/run_all.py                       # every benchmark (`make bench`; the soak alone takes --soak-minutes)
    python bench/run_all.py --only passthrough    # the pass-through ratio alone (`make bench-passthrough`)

Each benchmark runs as its own process (`python bench/NAME.py ... --json FILE`,
its output shown as it comes); its figures replace the section between
`<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` in
docs/benchmarks.md, with the machine, the date, the command and the load
average, and are kept in bench/results.json, so a run of one benchmark
leaves the others' figures as they were. The summary (also written to the
document's summary section) ends with the line `pass-through ratio: X.XX`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = HERE / "results.json"


@dataclass(frozen=True)
class Bench:
    script: str
    args: tuple[str, ...]
    timeout_s: int
    render: Callable[[dict], list[str]]


def _f(value, digits=2, unit=""):
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def render_passthrough(f: dict) -> list[str]:
    lines = ["| arm | median s | ratio to direct | proxy CPU s (of it: event loop) | all CPU s | pulls (s) |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for arm, median in f["median_s"].items():
        cpu = f["median_cpu_s"][arm]
        total = sum(v for k, v in cpu.items() if k != "proxy-loop")
        proxy = f"{cpu['proxy']:.2f} ({cpu['proxy-loop']:.2f})" if "proxy" in cpu else "-"
        pulls = " ".join(f"{t:.2f}" for t in f["times_s"][arm])
        ratio = f"**{f['ratio_to_direct'][arm]:.2f}**" if arm == "passthrough" else f"{f['ratio_to_direct'][arm]:.2f}"
        lines.append(f"| {arm} | {median:.2f} | {ratio} | {proxy} | {total:.2f} | {pulls} |")
    taps = f.get("tap", {})
    if taps.get("passthrough"):
        tap = taps["passthrough"][-1]
        lines += ["", f"The proxy's tap for one passthrough pull: {tap['relayed_events']} relayed tunnel events,"
                  f" {tap['relayed_bytes'] / 1e6:.1f} MB (the mirror fetches each blob twice), {tap['intercepted_events']}"
                  " intercepted CDN requests."]
    return lines


def render_fault_accuracy(f: dict) -> list[str]:
    lat = f["latency"]
    lines = [f"`latency` delay_ms {lat['delay_ms']}, {lat['requests']} requests each (counters {lat['counters']}):",
             "", "| | without | with | added | error |", "| --- | ---: | ---: | ---: | ---: |"]
    for label in ("p50", "p99"):
        row = lat[label]
        lines.append(f"| {label} | {row['without_ms']:.2f} ms | {row['with_ms']:.2f} ms | {row['added_ms']:.2f} ms | **{row['error_ms']:+.1f} ms** |")
    lines += ["", "| rate_kbps | blob | measured | error |", "| ---: | ---: | --- | --- |"]
    for row in f["bandwidth"]:
        measured = ", ".join(f"{r / 1e6:.3f}" for r in row["measured_bytes_per_s"])
        errors = ", ".join(f"{e:+.1f} %" for e in row["errors_percent"])
        lines.append(f"| {row['rate_kbps']} | {row['blob_bytes'] / 1e6:.1f} MB | {measured} MB/s | {errors} |")
    return lines


def render_lab_up(f: dict) -> list[str]:
    inproc, cli = f["in_process"], f["cli"]
    steps = ", ".join(f"{name} {value:.2f}" for name, value in inproc["median_steps_s"].items())
    return ["| | median up | median down | runs (up, s) |", "| --- | ---: | ---: | --- |",
            f"| `with Lab(...)` (in process) | **{inproc['median_up_s']:.2f} s** | {inproc['median_down_s']:.2f} s | "
            + " ".join(f"{t:.2f}" for t in inproc["up_s"]) + " |",
            f"| `python -m chaos lab up` / `lab down` | {cli['median_up_s']:.2f} s | {cli['median_down_s']:.2f} s | "
            + " ".join(f"{t:.2f}" for t in cli["up_s"]) + " |",
            "", f"Where the in-process start goes (median s, each component from its start until the lab saw it ready; they overlap, and a component started beside the seeding is looked at after it): {steps}."]


def render_scenario_wall(f: dict) -> list[str]:
    lines = ["| engine | wall | passed runs | note |", "| --- | ---: | ---: | --- |"]
    for engine, row in f["engines"].items():
        failed = [r for r in row["runs"] if r["exit"] != 0]
        note = f"exit {failed[0]['exit']}: {failed[0]['last_line'][:120]}" if failed else ""
        lines.append(f"| {engine} | {_f(row['median_wall_s'], 1, ' s')} | {row['passed']} of {len(row['runs'])} | {note} |")
    return lines


def render_concurrency(f: dict) -> list[str]:
    return [f"{f['clients']} clients, {f['rounds']} rounds, {f['blob_bytes'] // 1024} KiB blobs:", "",
            "| arm | p50 | p99 | errors |", "| --- | ---: | ---: | ---: |",
            *(f"| {arm} | {f[arm]['p50_ms']:.1f} ms | {f[arm]['p99_ms']:.1f} ms | {f['errors'][arm]} |"
              for arm in ("direct", "proxied", "floor") if arm in f),
            "", f"Added by the proxy: **p50 {f['added_p50_ms']:+.1f} ms**, p99 {f['added_p99_ms']:+.1f} ms;"
            f" errors through the proxy: **{f['errors']['proxied']}**; in flight afterwards: {f['proxy_in_flight_after']}."
            + (f" Plain mitmdump (floor) adds p50 {f['floor_added_p50_ms']:+.1f} ms." if "floor_added_p50_ms" in f else "")]


def render_rss(f: dict) -> list[str]:
    lines = ["| way | throughput | RSS before | RSS max | RSS after |", "| --- | ---: | ---: | ---: | ---: |"]
    for way in ("bandwidth", "intercepted", "relayed"):
        row = f[way]
        maximum = f"**{row['rss_max'] / 1e6:.1f} MB**" if way == "bandwidth" else f"{row['rss_max'] / 1e6:.1f} MB"
        lines.append(f"| {way} | {row['bytes_per_s'] / 1e6:.1f} MB/s | {row['rss_before'] / 1e6:.1f} MB | {maximum} |"
                     f" {row['rss_after'] / 1e6:.1f} MB |")
    return [f"{f['blob_bytes'] / 1e9:.1f} GB, bandwidth fault rate_kbps {f['rate_kbps']}:", ""] + lines


def render_soak(f: dict) -> list[str]:
    mb = 1e6
    return [
        "| check | figure |", "| --- | --- |",
        f"| duration, pullers, faults flapped | {f['minutes']:.1f} min, {f['pullers']}, {f['faults_switched']} (seed {f['seed']}) |",
        f"| pulls | {f['pulls']}: {f['pulls_ok']} ok, {f['pulls_failed']} failed {f['failed_by_code']}; p50 {f['pull_p50_s']:.2f} s |",
        f"| failed pulls explained (fault window or faulted event) | **{f['failed_explained']} of {f['pulls_failed']}** |",
        f"| tap events read / ids contiguous / dropped | {f['events_read']} / {f['event_ids_contiguous']} / {f['events_dropped']} |",
        f"| /metrics requests, started (intercepted) | {f['metrics_requests_total']:.0f} = events; {f['metrics_requests_started_total']:.0f} = {f['intercepted_events']} intercepted events |",
        f"| relayed tunnel events, their bytes = bytes counted as relayed | {f['relayed_events']}, {f['relayed_event_bytes']} = {f['metrics_passthrough_bytes_down']:.0f} |",
        f"| no tap event lost | **{f['no_event_lost']}** |",
        f"| in flight once every fault was cleared | **{f['in_flight_after_clear']}** (after {f['quiet_after_clear_s']} s; max during: {f['in_flight_max']}) |",
        f"| proxy RSS start / max / end | **{f['rss_start'] / mb:.1f} / {f['rss_max'] / mb:.1f} / {f['rss_end'] / mb:.1f} MB** |",
    ]


BENCHES: dict[str, Bench] = {
    "passthrough": Bench("passthrough.py", ("--pulls", "5"), 900, render_passthrough),
    "fault_accuracy": Bench("fault_accuracy.py", ("--requests", "100", "--runs", "3"), 900, render_fault_accuracy),
    "lab_up": Bench("lab_up.py", ("--runs", "5"), 600, render_lab_up),
    "scenario_wall": Bench("scenario_wall.py", (), 3600, render_scenario_wall),
    "concurrency": Bench("concurrency.py", ("--clients", "64", "--rounds", "5"), 900, render_concurrency),
    "rss": Bench("rss.py", ("--gigabytes", "1"), 900, render_rss),
    "soak": Bench("soak.py", (), 3600, render_soak),
}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    memory = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    try:
        from mitmproxy.version import VERSION as mitmproxy_version
    except ImportError:
        mitmproxy_version = "?"
    registry = shutil.which("docker-registry")
    distribution = subprocess.run([registry, "--version"], capture_output=True, text=True).stdout.split()[-1] if registry else "?"
    return (f"{os.cpu_count()} vCPUs ({model}), {memory / 1e6:.0f} GB RAM, Linux {platform.release()},"
            f" Python {platform.python_version()}, mitmproxy {mitmproxy_version}, distribution {distribution}")


def run_one(name: str, bench: Bench, extra: tuple[str, ...]) -> dict | None:
    with tempfile.TemporaryDirectory(prefix="bench-run-all-") as folder:
        out = Path(folder) / f"{name}.json"
        command = [sys.executable, str(HERE / bench.script), *bench.args, *extra, "--json", str(out)]
        shown = "python bench/" + " ".join([bench.script, *bench.args, *extra])
        print(f"\n== {name}: {shown}", flush=True)
        load = os.getloadavg()[0]
        started = time.time()
        try:
            done = subprocess.run(command, cwd=ROOT, timeout=bench.timeout_s)
        except subprocess.TimeoutExpired:
            print(f"{name}: no end within {bench.timeout_s} s", flush=True)
            return None
        if not out.exists():
            print(f"{name}: exited {done.returncode} without figures", flush=True)
            return None
        figures = json.loads(out.read_text())
    return {"figures": figures, "command": shown, "exit": done.returncode, "load_before": load,
            "load_after": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "seconds": round(time.time() - started, 1)}


def section(name: str, result: dict, where: str) -> str:
    head = (f"_Measured {result['date']} on {where}; `{result['command']}` ({result['seconds']:.0f} s, exit {result['exit']});"
            f" load average {result['load_before']:.2f} before, {result['load_after']:.2f} after._")
    return "\n".join([head, "", *BENCHES[name].render(result["figures"])])


def summary(results: dict) -> list[str]:
    """(figure, target, measured) rows, then the ratio line last."""
    rows = []

    def get(name):
        return results.get(name, {}).get("figures")

    if f := get("passthrough"):
        r = f["ratio_to_direct"]
        rows.append(("pass-through, cold 256 MB pull, Hub-shaped, no fault (ratio of medians)", "<= 1.10", f"{r['passthrough']:.2f}"))
        if "intercepted" in r:
            floor = f" (mitmproxy floor {r['floor']:.2f})" if "floor" in r else ""
            rows.append(("the same with a CDN fault active (full interception)", "report", f"{r['intercepted']:.2f}{floor}"))
        if "before" in r:
            rows.append(("the same through the proxy as it was before issue 13", "report", f"{r['before']:.2f}"))
    if f := get("lab_up"):
        rows.append(("lab up to ready, no dockerd (Lab; `chaos lab up`)", "<= 2 s",
                     f"{f['in_process']['median_up_s']:.2f} s; {f['cli']['median_up_s']:.2f} s"))
    if f := get("scenario_wall"):
        walls = ", ".join(f"{e} {_f(row['median_wall_s'], 1, ' s')}" for e, row in f["engines"].items())
        rows.append(("`hub-down.yaml` wall per engine", "report", walls))
    if f := get("concurrency"):
        rows.append((f"{f['clients']} concurrent manifest+blob pulls through the proxy", "0 errors, added p50 <= 2 ms",
                     f"{f['errors']['proxied']} errors, added p50 {f['added_p50_ms']:+.1f} ms"))
    if f := get("rss"):
        rows.append(("proxy RSS streaming 1 GB through a bandwidth fault", "<= 150 MB", f"{f['bandwidth']['rss_max'] / 1e6:.0f} MB"))
    if f := get("fault_accuracy"):
        lat = f["latency"]
        errors = [e for row in f["bandwidth"] for e in row["errors_percent"]]
        rows.append(("latency fault error (p50, p99)", "within 5 ms", f"{lat['p50']['error_ms']:+.1f} ms, {lat['p99']['error_ms']:+.1f} ms"))
        rows.append(("bandwidth fault error", "within 10 %", f"{min(errors):+.1f} % to {max(errors):+.1f} %"))
    if f := get("soak"):
        rows.append((f"soak, {f['minutes']:.0f} min, {f['pullers']} pullers, faults flapping", "nothing lost, stuck or unexplained",
                     f"events lost: {not f['no_event_lost']}; in flight after: {f['in_flight_after_clear']};"
                     f" unexplained failures: {f['failed_unexplained']}; RSS {f['rss_start'] / 1e6:.0f}/{f['rss_max'] / 1e6:.0f}/{f['rss_end'] / 1e6:.0f} MB"))
    return rows


def rewrite(text: str, name: str, body: str) -> str:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        return text + f"\n{start}\n{body}\n{end}\n"
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated, from: {', '.join(BENCHES)}")
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md or bench/results.json")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)} (expected: {', '.join(BENCHES)})")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    where = machine()
    for name in chosen:
        extra = ("--minutes", f"{args.soak_minutes:g}") if name == "soak" else ()
        result = run_one(name, BENCHES[name], extra)
        if result is not None:
            result["machine"] = where
            results[name] = result
    rows = summary(results)
    table = ["| figure | target | measured |", "| --- | --- | --- |", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    if not args.no_write:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        text = DOC.read_text()
        for name in chosen:
            if name in results:
                text = rewrite(text, name, section(name, results[name], results[name].get("machine", where)))
        stamp = f"_Summary rewritten {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python bench/run_all.py --only {','.join(chosen)}` on {where}._"
        text = rewrite(text, "summary", "\n".join([stamp, "", *table]))
        DOC.write_text(text)
    print("\nsummary")
    for figure, target, measured in rows:
        print(f"  {figure}: {measured} (target {target})")
    ratio = results.get("passthrough", {}).get("figures", {}).get("ratio_to_direct", {}).get("passthrough")
    print(f"pass-through ratio: {ratio:.2f}" if ratio is not None else "pass-through ratio: n/a")
    return 0


if __name__ == "__main__":
    sys.exit(main())
