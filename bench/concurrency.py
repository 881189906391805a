"""64 concurrent manifest+blob pulls through the fault proxy: errors, and the
latency the proxy adds.

Hub-shaped (bench/_hubshaped.py): a manifest GET to the registry, then a blob
GET answered 307 and followed to the CDN. `--clients` threads (default 64),
each with its own keep-alive session, start together and each does
`--rounds` pulls of its own repository, one after the other; a warm-up round
first (connections, certificates). Three arms, their order rotated round by round:

  direct   the hub and CDN themselves (the hub redirects to the CDN on 127.0.0.1)
  proxied  through the lab's fault proxy (no fault active: the CDN tunnels are
           relayed unopened; registry requests intercepted; the lab's options)
  floor    plain mitmdump with a bare routing script (bench/_router.py), as in
           passthrough.py: what mitmproxy itself adds, before any addon

Per pull: the time from the manifest request to the blob's last byte. The
figure is the added p50 (proxied p50 - direct p50); every error is counted.

Run from the venv:  python bench/concurrency.py [--clients 64] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hubshaped import HubShaped  # noqa: E402
from _stack import Stack, run_in_scratch, seed, write_figures  # noqa: E402
from passthrough import LAB_OPTIONS  # noqa: E402

from chaos.images.synth import build_image  # noqa: E402
from chaos.proxy.control_client import ControlClient  # noqa: E402
from chaos.vocab.hub import CDN_HOST, REGISTRY_URL  # noqa: E402

MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
TIMEOUT_S = 60


def _session(proxy_url: str | None, ca_file: Path, clients: int) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_file)
    if proxy_url:
        session.proxies = {"https": proxy_url}
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4)
    session.mount("https://", adapter)
    return session


def _pull(session: requests.Session, base: str, repository: str, digest: str, size: int) -> float:
    started = time.perf_counter()
    manifest = session.get(f"{base}/v2/{repository}/manifests/latest", headers={"Accept": MANIFEST_TYPES}, timeout=TIMEOUT_S)
    manifest.raise_for_status()
    blob = session.get(f"{base}/v2/{repository}/blobs/{digest}", timeout=TIMEOUT_S)
    blob.raise_for_status()
    if len(blob.content) != size:
        raise RuntimeError(f"blob of {len(blob.content)} bytes, expected {size}")
    return time.perf_counter() - started


def _wave(sessions, base: str, images: list[tuple[str, str, int]]) -> tuple[list[float], list[str]]:
    """Every client pulls once, all started together."""
    barrier = threading.Barrier(len(sessions))
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        repository, digest, size = images[index]
        barrier.wait(timeout=TIMEOUT_S)
        try:
            seconds = _pull(sessions[index], base, repository, digest, size)
        except Exception as err:  # noqa: BLE001 - every failure is a figure
            with lock:
                errors.append(f"{type(err).__name__}: {str(err)[:160]}")
            return
        with lock:
            times.append(seconds)

    with ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(one, range(len(sessions))))
    return times, errors


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run(args: argparse.Namespace, root: Path) -> dict:
    with Stack(root) as stack:
        shaped = HubShaped(stack, root)
        cdn = shaped.cdn()
        direct_hub = shaped.hub("hub-direct", redirect_to=cdn)
        lab_hub = shaped.hub("hub-lab")
        images = []
        for index in range(args.clients):
            repository = f"bench/c{index}"
            image = build_image(repository, "latest", args.blob_bytes, seed=f"bench-concurrency-{index}", layers=1)
            seed(direct_hub, shaped.ca_file, repository, "latest", image)
            images.append((repository, image.layers[0].digest, image.layers[0].size))
        proxy = shaped.fault_proxy("proxied", lab_hub, extra=tuple(x for item in LAB_OPTIONS.split() for x in ("--set", item)))
        floor = shaped.floor_proxy("floor", shaped.hub("hub-floor", redirect_to=f"https://{CDN_HOST}"))
        arms = {"direct": (direct_hub, None, shaped.ca_file), "proxied": (REGISTRY_URL, proxy.url, proxy.ca_file),
                "floor": (REGISTRY_URL, floor.url, floor.ca_file)}
        sessions = {arm: [_session(url, ca_file, args.clients) for _ in range(args.clients)]
                    for arm, (_, url, ca_file) in arms.items()}
        times = {arm: [] for arm in arms}
        errors = {arm: [] for arm in arms}
        names = list(arms)
        for round_no in range(args.rounds + 1):
            for arm in names[round_no % len(names):] + names[:round_no % len(names)]:
                base = arms[arm][0]
                wave_times, wave_errors = _wave(sessions[arm], base, images)
                label = "warm-up" if round_no == 0 else f"round {round_no}"
                print(f"  {label:8} {arm:8} p50 {statistics.median(wave_times) * 1000 if wave_times else float('nan'):7.1f} ms"
                      f"  errors {len(wave_errors)}", flush=True)
                if round_no:
                    times[arm] += wave_times
                    errors[arm] += wave_errors
        for arm_sessions in sessions.values():
            for session in arm_sessions:
                session.close()
        with ControlClient(proxy.control_url) as control:
            in_flight = control.health()["in_flight"]
    figures = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "clients": args.clients, "rounds": args.rounds,
               "blob_bytes": args.blob_bytes, "errors": {arm: len(e) for arm, e in errors.items()},
               "error_samples": {arm: e[:5] for arm, e in errors.items()}, "proxy_in_flight_after": in_flight}
    for arm, values in times.items():
        figures[arm] = {"pulls": len(values), "p50_ms": _percentile(values, 0.5) * 1000, "p99_ms": _percentile(values, 0.99) * 1000}
    figures["added_p50_ms"] = figures["proxied"]["p50_ms"] - figures["direct"]["p50_ms"]
    figures["added_p99_ms"] = figures["proxied"]["p99_ms"] - figures["direct"]["p99_ms"]
    figures["floor_added_p50_ms"] = figures["floor"]["p50_ms"] - figures["direct"]["p50_ms"]
    return figures


def report(figures: dict) -> str:
    return "\n".join([
        f"{figures['clients']} concurrent manifest+blob pulls ({figures['blob_bytes']} byte blobs), {figures['rounds']} rounds",
        *(f"{arm:8} p50 {figures[arm]['p50_ms']:7.1f} ms  p99 {figures[arm]['p99_ms']:7.1f} ms  errors {figures['errors'][arm]}"
          for arm in ("direct", "proxied", "floor")),
        f"added by the proxy: p50 {figures['added_p50_ms']:+.1f} ms, p99 {figures['added_p99_ms']:+.1f} ms;"
        f" errors {figures['errors']['proxied']}; plain mitmdump adds p50 {figures['floor_added_p50_ms']:+.1f} ms",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blob-bytes", type=int, default=64 * 1024)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    figures = run_in_scratch(run, args, prefix="bench-concurrency-")
    if figures is None:
        return 130
    figures["load_average_1min_before"] = args.load_before
    figures["load_average_1min_after"] = os.getloadavg()[0]
    print(report(figures))
    write_figures(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
