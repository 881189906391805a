"""How exactly the fault proxy's latency and bandwidth faults hold their numbers.

Through the real proxy (mitmdump + addons/hub_chaos.py, regular mode, as the
lab runs it) in front of a TLS hub, with a client going through HTTPS_PROXY:

- latency: a `latency` fault of delay_ms 200 on the manifest endpoint of one
  repository; N manifest GETs to it, alternated with N to an identical
  repository the fault does not match (each on its own keep-alive connection).
  Error = (percentile with the fault) - (same percentile without) - 200 ms,
  at p50 and p99.
- bandwidth: a `bandwidth` fault of rate_kbps 1000 (1 MB/s; 1 kB = 1000 bytes)
  and 50000 (50 MB/s) on a blob GET, blob sizes chosen so a download takes
  about `--seconds`; throughput = body bytes / (request sent .. last byte),
  as the client sees it, error in percent of the rate. The unthrottled
  throughput of the same download is printed too, so a rate near the
  proxy's ceiling is noticed.

Run from the venv:  python bench/fault_accuracy.py [--requests 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import Stack, run_in_scratch, seed, write_figures  # noqa: E402
from _tls import make_server_cert  # noqa: E402

from chaos.images.synth import build_image  # noqa: E402
from chaos.proxy.control_client import ControlClient  # noqa: E402
from chaos.vocab.hub import REGISTRY_HOST  # noqa: E402

DELAY_MS = 200
RATES_KBPS = (1000, 50000)
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json"
CHUNK = 1 << 20
TIMEOUT_S = 120.0


def _client(proxy_url: str, ca_file: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": proxy_url}
    session.verify = str(ca_file)
    return session


def _percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _timed_get(session: requests.Session, url: str, **kwargs) -> float:
    started = time.perf_counter()
    response = session.get(url, timeout=TIMEOUT_S, **kwargs)
    response.raise_for_status()
    return time.perf_counter() - started


def measure_latency(control: ControlClient, proxy_url: str, ca_file: Path, count: int) -> dict:
    control.add({"name": "bench-latency", "kind": "latency", "params": {"delay_ms": DELAY_MS},
                 "match": {"endpoints": ["manifest"], "repository": "bench/delayed"}, "ttl_s": 600})
    headers = {"Accept": MANIFEST_TYPES}
    delayed_url = f"https://{REGISTRY_HOST}/v2/bench/delayed/manifests/latest"
    plain_url = f"https://{REGISTRY_HOST}/v2/bench/plain/manifests/latest"
    with _client(proxy_url, ca_file) as delayed, _client(proxy_url, ca_file) as plain:
        for _ in range(3):  # warm-up: connections, TLS, certificates
            _timed_get(delayed, delayed_url, headers=headers)
            _timed_get(plain, plain_url, headers=headers)
        with_fault, without = [], []
        for _ in range(count):
            with_fault.append(_timed_get(delayed, delayed_url, headers=headers) * 1000)
            without.append(_timed_get(plain, plain_url, headers=headers) * 1000)
    counters = next(f for f in control.list() if f["name"] == "bench-latency")["counters"]
    control.remove("bench-latency")
    figures = {"requests": count, "delay_ms": DELAY_MS, "counters": counters}
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        base, slow = _percentile(without, fraction), _percentile(with_fault, fraction)
        figures[label] = {"without_ms": base, "with_ms": slow, "added_ms": slow - base,
                          "error_ms": slow - base - DELAY_MS}
    figures["min_with_ms"] = min(with_fault)
    return figures


def _download(session: requests.Session, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    got = 0
    with session.get(url, stream=True, timeout=TIMEOUT_S) as response:
        response.raise_for_status()
        for chunk in response.iter_content(CHUNK):
            got += len(chunk)
    return got, time.perf_counter() - started


def measure_bandwidth(control: ControlClient, proxy_url: str, ca_file: Path, rate_kbps: int, repository: str,
                      digest: str, runs: int) -> dict:
    url = f"https://{REGISTRY_HOST}/v2/{repository}/blobs/{digest}"
    with _client(proxy_url, ca_file) as session:
        size, seconds = _download(session, url)  # unthrottled, also a warm-up
        unthrottled = size / seconds
        control.add({"name": "bench-bandwidth", "kind": "bandwidth", "params": {"rate_kbps": rate_kbps},
                     "match": {"endpoints": ["blob"], "repository": repository}, "ttl_s": 600})
        try:
            rates = []
            for _ in range(runs):
                size, seconds = _download(session, url)
                rates.append(size / seconds)
            counters = next(f for f in control.list() if f["name"] == "bench-bandwidth")["counters"]
        finally:
            control.remove("bench-bandwidth")
    target = rate_kbps * 1000
    return {"rate_kbps": rate_kbps, "blob_bytes": size, "unthrottled_bytes_per_s": unthrottled,
            "measured_bytes_per_s": rates, "errors_percent": [100 * (r - target) / target for r in rates],
            "counters": counters}


def run(args: argparse.Namespace, root: Path) -> dict:
    cert = make_server_cert(root / "tls")
    with Stack(root) as stack:
        hub_url, _ = stack.hub(cert)
        small = build_image("bench/manifest", "latest", 4096, seed="bench-latency", layers=1)
        for repository in ("bench/delayed", "bench/plain"):
            seed(hub_url, cert.ca_file, repository, "latest", small)
        blobs = {}
        for rate in RATES_KBPS:
            repository = f"bench/bw-{rate}"
            image = build_image(repository, "latest", int(rate * 1000 * args.seconds), seed="bench-bandwidth", layers=1)
            seed(hub_url, cert.ca_file, repository, "latest", image)
            blobs[rate] = (repository, image.layers[0].digest)
            del image
        proxy = stack.fault_proxy("hubchaos", routes={"registry": hub_url}, upstream_ca=cert.ca_file,
                                  cdn_secret_file=None, extra=tuple(x for s in args.proxy_sets for x in ("--set", s)))
        with ControlClient(proxy.control_url, timeout=5.0) as control:
            print(f"latency: {args.requests} manifest GETs with and without a {DELAY_MS} ms fault...", flush=True)
            latency = measure_latency(control, proxy.url, proxy.ca_file, args.requests)
            bandwidth = []
            for rate in RATES_KBPS:
                print(f"bandwidth: {args.runs} downloads at rate_kbps {rate}...", flush=True)
                repository, digest = blobs[rate]
                bandwidth.append(measure_bandwidth(control, proxy.url, proxy.ca_file, rate, repository, digest, args.runs))
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "proxy_sets": args.proxy_sets,
            "latency": latency, "bandwidth": bandwidth}


def _report(figures: dict) -> str:
    latency = figures["latency"]
    lines = [f"\nlatency fault, delay_ms {latency['delay_ms']}, {latency['requests']} requests each"
             f" (fault counters: {latency['counters']})",
             f"{'':5} {'without ms':>11} {'with ms':>9} {'added ms':>9} {'error ms':>9}"]
    for label in ("p50", "p99"):
        row = latency[label]
        lines.append(f"{label:5} {row['without_ms']:11.2f} {row['with_ms']:9.2f} {row['added_ms']:9.2f} {row['error_ms']:+9.2f}")
    lines.append(f"fastest faulted response: {latency['min_with_ms']:.2f} ms")
    lines.append("\nbandwidth fault (1 kB = 1000 bytes)")
    for row in figures["bandwidth"]:
        target = row["rate_kbps"] * 1000
        measured = " ".join(f"{r / 1e6:.3f}" for r in row["measured_bytes_per_s"])
        errors = " ".join(f"{e:+.1f}%" for e in row["errors_percent"])
        lines.append(f"rate_kbps {row['rate_kbps']:>6}: {row['blob_bytes'] / 1e6:.1f} MB blob, target {target / 1e6:.3f} MB/s,"
                     f" measured {measured} MB/s, error {errors}"
                     f" (unthrottled {row['unthrottled_bytes_per_s'] / 1e6:.0f} MB/s; counters {row['counters']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="manifest GETs with and without the fault (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="throttled downloads per rate (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="target length of one throttled download (default 4)")
    parser.add_argument("--set", dest="proxy_sets", action="append", default=[], metavar="OPTION=VALUE",
                        help="extra mitmdump option (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.requests < 50 or args.runs < 1 or args.seconds <= 0:
        parser.error("--requests must be at least 50, --runs at least 1, --seconds above 0")
    figures = run_in_scratch(run, args, prefix="bench-faults-")
    if figures is None:
        return 130
    print(_report(figures))
    write_figures(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
