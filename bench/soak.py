"""Soak: 16 concurrent pullers through the lab while faults flap, for minutes.

The embedded lab (chaos.lab.lab.Lab, no dockerd) with a few images; half the
pullers pull through the mirror (the builtin engine as scenarios use it,
chaos.clients.engines.make_engine), half straight from Hub through the fault
proxy (the same engine given no mirror), so the proxy keeps carrying
registry, token and CDN traffic after the mirror's cache is warm. Meanwhile a
flapper switches one fault on every few seconds and off again after a second
or three: refuse, reset, latency or an http 503, on role registry, auth or
cdn, chosen by a seeded random generator (--seed).

Checked at the end, and printed (and written with --json):
- no tap event lost: events read through the control API (paged with a
  cursor while the soak ran) are exactly the ids 1..N with nothing dropped;
  the proxy's own counters (/metrics) agree: requests = events, requests
  started (intercepted) = intercepted events, bytes relayed through
  pass-through tunnels = those tunnels' events' bytes;
- no request stuck after its fault ends: with every fault cleared, the
  proxy's in_flight returns to 0 (within QUIET_DEADLINE_S);
- proxy RSS flat: VmRSS of mitmdump sampled every second (start, max, end);
- every pull's verdict explained: each failed pull overlaps a fault's window
  (on until a grace period after off) or a tap event carrying a fault.

Run from the venv:  python bench/soak.py [--minutes 10] [--pullers 16] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from chaos.clients.engines import make_engine
from chaos.lab.lab import Lab
from chaos.language.model import LabSpec, SeedImage
from chaos.proxy.control_client import ControlClient
from chaos.vocab.reference import parse_reference

IMAGES = (("alpine:3.19", 3_000_000, 2), ("busybox:1.36", 1_000_000, 1), ("redis:7", 6_000_000, 3),
          ("nginx:1.25", 4_000_000, 2), ("postgres:16", 8_000_000, 3))
KINDS = (
    ("refuse", {}),
    ("reset", {}),
    ("latency", {"delay_ms": 400}),
    ("http", {"status": 503}),
)
ROLES = ("registry", "auth", "cdn")
PULL_TIMEOUT_S = 30.0
GRACE_S = 2.0  # after a fault goes off, a client may still be failing from it (retries, backoff)
QUIET_DEADLINE_S = 30.0


class Record:
    """Everything the threads report, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pulls: list[dict] = []
        self.windows: list[dict] = []
        self.rss: list[tuple[float, int]] = []
        self.threads: list[int] = []
        self.tunnels_open: list[float] = []
        self.in_flight: list[tuple[float, int]] = []
        self.events: list[dict] = []
        self.dropped = 0
        self.errors: list[str] = []


def puller(index: int, engine, images: list[str], stop: threading.Event, record: Record, seed: int) -> None:
    rng = random.Random(seed * 1000 + index)
    while not stop.is_set():
        ref = rng.choice(images)
        started = time.time()
        try:
            result = engine.pull(parse_reference(ref))
            outcome = {"ok": result.ok, "error_code": result.error_code, "message": (result.message or "")[:200],
                       "served_by": result.served_by}
        except Exception as err:  # noqa: BLE001 - an engine that raises is a finding, not a crash
            outcome = {"ok": False, "error_code": "RAISED", "message": f"{type(err).__name__}: {err}"[:200], "served_by": None}
        with record.lock:
            record.pulls.append({"puller": index, "image": ref, "start": started, "end": time.time(), **outcome})


def flapper(control: ControlClient, stop: threading.Event, record: Record, seed: int, period_s: float) -> None:
    rng = random.Random(seed)
    number = 0
    while not stop.wait(rng.uniform(0.5, 1.0) * period_s):
        kind, params = rng.choice(KINDS)
        role = rng.choice(ROLES)
        number += 1
        name = f"flap-{number}"
        on_s = rng.uniform(1.0, 3.0)
        window = {"name": name, "kind": kind, "role": role, "on": time.time(), "off": None}
        try:
            control.add({"name": name, "kind": kind, "params": params, "match": {"roles": [role]}, "ttl_s": 60})
            window["on"] = time.time()
            with record.lock:
                record.windows.append(window)
            stop.wait(on_s)
            control.remove(name)
        except Exception as err:  # noqa: BLE001
            with record.lock:
                record.errors.append(f"flapper: {type(err).__name__}: {err}")
        window["off"] = time.time()


def monitor(control: ControlClient, pid: int, stop: threading.Event, record: Record) -> None:
    cursor = 0
    while True:
        now = time.time()
        try:
            rss, threads = _rss(pid), _threads(pid)
            health = control.health()
            page = control.events(after=cursor, limit=10000)
            cursor = page.next
            tunnels = _metric_totals(control.metrics()).get("hub_chaos_passthrough_tunnels_open", 0.0)
            with record.lock:
                record.rss.append((now, rss))
                record.threads.append(threads)
                record.tunnels_open.append(tunnels)
                record.in_flight.append((now, health["in_flight"]))
                record.events += page.events
                record.dropped += page.dropped
        except Exception as err:  # noqa: BLE001
            with record.lock:
                record.errors.append(f"monitor: {type(err).__name__}: {err}")
        if stop.wait(1.0):
            return


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def _metric_totals(text: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if key.endswith("_total") or key in ("hub_chaos_requests_in_flight", "hub_chaos_faults_active",
                                                 "hub_chaos_passthrough_tunnels_open"):
                if key == "hub_chaos_passthrough_bytes_total":
                    key = f"{key}{{direction={sample.labels.get('direction')}}}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def explain(pulls: list[dict], windows: list[dict], events: list[dict]) -> tuple[int, list[dict]]:
    faulted = sorted(e["ts"] for e in events if e["fault"])
    explained, unexplained = 0, []
    for pull in pulls:
        if pull["ok"]:
            continue
        in_window = any(w["on"] <= pull["end"] and (w["off"] or pull["end"]) + GRACE_S >= pull["start"] for w in windows)
        with_fault_event = any(pull["start"] <= ts <= pull["end"] for ts in faulted)
        if in_window or with_fault_event:
            explained += 1
        else:
            unexplained.append(pull)
    return explained, unexplained


def run(args: argparse.Namespace) -> dict:
    spec = LabSpec(images=tuple(SeedImage(parse_reference(ref), size, layers=layers) for ref, size, layers in IMAGES))
    images = [ref for ref, _, _ in IMAGES]
    record = Record()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as folder, Lab(spec, Path(folder) / "lab") as lab:
        pid = lab.components["proxy"].pid
        through_mirror = make_engine("builtin", lab=lab.state, credentials=None, timeout=PULL_TIMEOUT_S)
        hub_only = make_engine("builtin", lab=dataclasses.replace(lab.state, mirror_url=""), credentials=None,
                               timeout=PULL_TIMEOUT_S)
        stop_pullers, stop_flapper, stop_monitor = threading.Event(), threading.Event(), threading.Event()
        with ControlClient(lab.state.control_url, timeout=10) as flap_control, \
                ControlClient(lab.state.control_url, timeout=10) as watch_control:
            watchers = [threading.Thread(target=monitor, args=(watch_control, pid, stop_monitor, record), daemon=True)]
            watchers[0].start()
            pullers = [threading.Thread(target=puller, daemon=True,
                                        args=(i, through_mirror if i % 2 == 0 else hub_only, images, stop_pullers, record, args.seed))
                       for i in range(args.pullers)]
            flap = threading.Thread(target=flapper, args=(flap_control, stop_flapper, record, args.seed, args.flap_s), daemon=True)
            started = time.time()
            for thread in pullers:
                thread.start()
            flap.start()
            deadline = started + args.minutes * 60
            while time.time() < deadline:
                time.sleep(min(10.0, max(0.0, deadline - time.time())))
                with record.lock:
                    done, failed = len(record.pulls), sum(1 for p in record.pulls if not p["ok"])
                    rss = record.rss[-1][1] if record.rss else 0
                print(f"  {time.time() - started:6.0f} s: {done} pulls, {failed} failed, {len(record.windows)} faults,"
                      f" proxy RSS {rss / 1e6:.1f} MB", flush=True)
            stop_flapper.set()
            flap.join(30)
            stop_pullers.set()
            for thread in pullers:
                thread.join(PULL_TIMEOUT_S + 10)
            ended = time.time()
            # Every fault off: nothing may stay in flight.
            cleared = flap_control.reset()
            quiet_started = time.monotonic()
            while watch_control.health()["in_flight"] and time.monotonic() - quiet_started < QUIET_DEADLINE_S:
                time.sleep(0.1)
            quiet_after_s = time.monotonic() - quiet_started
            in_flight_end = watch_control.health()["in_flight"]
            stop_monitor.set()
            watchers[0].join(10)
            # The last events, then the proxy's own counters.
            cursor = record.events[-1]["id"] if record.events else 0
            page = watch_control.events(after=cursor, limit=10000)
            record.events += page.events
            record.dropped += page.dropped
            last_id = watch_control.health()["last_event"]
            totals = _metric_totals(watch_control.metrics())
    events = record.events
    ids = [e["id"] for e in events]
    intercepted = [e for e in events if not e.get("tunnel")]
    relayed = [e for e in events if e.get("tunnel")]
    explained, unexplained = explain(record.pulls, record.windows, events)
    rss_values = [v for _, v in record.rss]
    failed = [p for p in record.pulls if not p["ok"]]
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "minutes": round((ended - started) / 60, 2),
        "pullers": args.pullers, "seed": args.seed, "images": images,
        "pulls": len(record.pulls), "pulls_ok": len(record.pulls) - len(failed), "pulls_failed": len(failed),
        "failed_by_code": {code: sum(1 for p in failed if p["error_code"] == code) for code in sorted({p["error_code"] or "" for p in failed})},
        "failed_explained": explained, "failed_unexplained": len(unexplained), "unexplained_samples": unexplained[:5],
        "pull_p50_s": statistics.median(p["end"] - p["start"] for p in record.pulls) if record.pulls else None,
        "faults_switched": len(record.windows), "faults_cleared_at_end": cleared,
        "events_read": len(events), "last_event_id": last_id, "events_dropped": record.dropped,
        "event_ids_contiguous": ids == list(range(1, last_id + 1)),
        "metrics_requests_total": totals.get("hub_chaos_requests_total", 0.0),
        "metrics_requests_started_total": totals.get("hub_chaos_requests_started_total", 0.0),
        "intercepted_events": len(intercepted), "relayed_events": len(relayed),
        "relayed_event_bytes": sum(e["bytes"] for e in relayed),
        "metrics_passthrough_bytes_down": totals.get("hub_chaos_passthrough_bytes_total{direction=down}", 0.0),
        "in_flight_after_clear": in_flight_end, "quiet_after_clear_s": round(quiet_after_s, 2),
        "in_flight_max": max((v for _, v in record.in_flight), default=0),
        "rss_start": rss_values[0] if rss_values else 0, "rss_max": max(rss_values, default=0),
        "rss_end": rss_values[-1] if rss_values else 0, "rss_samples": len(rss_values),
        "rss_by_minute": [v for i, v in enumerate(rss_values) if i % 60 == 0],
        "threads_max": max(record.threads, default=0), "threads_end": record.threads[-1] if record.threads else 0,
        "tunnels_open_max": max(record.tunnels_open, default=0.0),
        "tunnels_open_end": record.tunnels_open[-1] if record.tunnels_open else 0.0,
        "harness_errors": record.errors[:10],
    }
    figures["no_event_lost"] = (figures["event_ids_contiguous"] and record.dropped == 0
                                and figures["metrics_requests_total"] == len(events)
                                and figures["metrics_requests_started_total"] == len(intercepted)
                                and figures["metrics_passthrough_bytes_down"] == figures["relayed_event_bytes"])
    return figures


def report(f: dict) -> str:
    mb = 1e6
    return "\n".join([
        f"soak: {f['minutes']:.1f} min, {f['pullers']} pullers, {f['faults_switched']} faults flapped (seed {f['seed']})",
        f"pulls: {f['pulls']} ({f['pulls_ok']} ok, {f['pulls_failed']} failed: {f['failed_by_code']}); p50 {f['pull_p50_s']:.2f} s",
        f"failed pulls explained by a fault window or a faulted event: {f['failed_explained']} of {f['pulls_failed']}"
        f" (unexplained: {f['failed_unexplained']})",
        f"tap: {f['events_read']} events read, ids 1..{f['last_event_id']} contiguous: {f['event_ids_contiguous']},"
        f" dropped {f['events_dropped']}; /metrics requests {f['metrics_requests_total']:.0f},"
        f" started {f['metrics_requests_started_total']:.0f} = intercepted events {f['intercepted_events']};"
        f" relayed tunnel events {f['relayed_events']}, {f['relayed_event_bytes']} bytes ="
        f" counted {f['metrics_passthrough_bytes_down']:.0f}: no event lost: {f['no_event_lost']}",
        f"in flight after every fault was cleared: {f['in_flight_after_clear']} (quiet after {f['quiet_after_clear_s']} s;"
        f" max during the soak {f['in_flight_max']})",
        f"proxy RSS: start {f['rss_start'] / mb:.1f} MB, max {f['rss_max'] / mb:.1f} MB, end {f['rss_end'] / mb:.1f} MB"
        f" ({f['rss_samples']} samples; by minute: {' '.join(f'{v / mb:.0f}' for v in f['rss_by_minute'])} MB)",
        f"proxy threads: max {f['threads_max']}, end {f['threads_end']}; relayed tunnels open: max {f['tunnels_open_max']:.0f},"
        f" end {f['tunnels_open_end']:.0f}",
    ] + ([f"harness errors: {f['harness_errors']}"] if f["harness_errors"] else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pullers", type=int, default=16)
    parser.add_argument("--flap-s", type=float, default=4.0, help="a new fault every 0.5 to 1 times this (default 4 s)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    try:
        figures = run(args)
    except KeyboardInterrupt:
        print("interrupted; the lab is stopped", file=sys.stderr)
        return 130
    figures["load_average_1min_before"] = load_before
    figures["load_average_1min_after"] = os.getloadavg()[0]
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = figures["no_event_lost"] and figures["in_flight_after_clear"] == 0 and figures["failed_unexplained"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
