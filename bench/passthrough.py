"""Pass-through cost of the fault proxy with no fault active.

A cold pull of a 256 MB image through a fresh pull-through mirror (the
distribution registry, proxy mode, empty storage for every pull), with and
without the proxy between the mirror and the hub. Same mirror binary, same
hub (a plain distribution registry serving TLS, so the mirror talks TLS to its
upstream in every arm), arms alternated round by round, one untimed warm-up
round first. Prints each arm's pull times, the median, and the ratio of
medians against the direct arm.

Arms:
  direct            mirror --TLS--> hub (Go to Go: HTTP/2)
  direct-http1      the same with the mirror held to HTTP/1.1 (GODEBUG=http2client=0),
                    the protocol the proxied arms use with --set http2=false
  hubchaos          mirror --HTTPS_PROXY/TLS--> mitmdump + hub_chaos addon (as the lab
                    runs it, regular mode) --TLS--> hub; blob GETs answered 307 and
                    served by the blob CDN (chaos.lab.cdn_service) through the proxy
  hubchaos-nocdn    the same with --set hub_cdn_host= (no 307 hop): like for like
  mitmdump-reverse  mirror --TLS--> plain mitmdump --mode reverse:HUB, no addon
                    (the reference: what mitmproxy itself costs)
  hubchaos-reverse  the same with the hub_chaos addon loaded

Run from the venv:  python bench/passthrough.py [--pulls 5] [--arms direct,hubchaos,...]
Nothing leaves loopback; every process is killed at the end, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos.images.synth import build_image, parse_size  # noqa: E402

from _pull import pull  # noqa: E402
from _stack import Stack, Upstream, cpu_seconds, run_in_scratch, seed  # noqa: E402
from _tls import make_server_cert  # noqa: E402

from chaos.lab.components.proxy import ADDON  # noqa: E402
from chaos.lab.process import ManagedProcess  # noqa: E402
from chaos.vocab.hub import REGISTRY_URL  # noqa: E402

ARMS = ("direct", "direct-http1", "hubchaos", "hubchaos-nocdn", "mitmdump-reverse", "hubchaos-reverse")
REPOSITORY, TAG = "bench/big", "latest"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="256MB", help="image size (default 256MB = 256 000 000 bytes)")
    parser.add_argument("--layers", type=int, default=4, help="layers in the image (default 4)")
    parser.add_argument("--pulls", type=int, default=5, help="timed pulls per arm (default 5)")
    parser.add_argument("--concurrency", type=int, default=3, help="blobs fetched at once (default 3, as dockerd)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from: {', '.join(ARMS)}")
    parser.add_argument("--set", dest="proxy_sets", action="append", default=[], metavar="OPTION=VALUE",
                        help="extra mitmdump option for every proxy arm (repeatable), e.g. stream_large_bodies=1m")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work folder to use and keep (default: a temporary one, removed)")
    parser.add_argument("--mirror-storage", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                        help="where fresh mirrors keep their storage (default /dev/shm: RAM, so disk write-back"
                             " does not blur the figures); removed after each pull")
    args = parser.parse_args(argv)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)} (expected: {', '.join(ARMS)})")
    if args.pulls < 1:
        parser.error("--pulls must be at least 1")
    return args


def _start_arms(stack: Stack, arms: list[str], hub_url: str, hub_storage: Path, ca_file: Path,
                sets: tuple[str, ...]) -> dict[str, Upstream]:
    """For each arm, what its mirrors are put in front of."""
    hub_port = hub_url.rsplit(":", 1)[1]
    setup: dict[str, Upstream] = {}
    cdn_url = secret_file = None
    if "hubchaos" in arms:
        cdn_url, secret_file = stack.cdn(hub_storage)
    for arm in arms:
        if arm == "direct":
            setup[arm] = Upstream(hub_url, ca_file)
        elif arm == "direct-http1":
            setup[arm] = Upstream(hub_url, ca_file, extra_env={"GODEBUG": "http2client=0"})
        elif arm in ("hubchaos", "hubchaos-nocdn"):
            routes = {"registry": hub_url} | ({"cdn": cdn_url} if arm == "hubchaos" else {})
            extra = sets if arm == "hubchaos" else sets + ("--set", "hub_cdn_host=")
            proxy = stack.fault_proxy(arm, routes=routes, upstream_ca=ca_file,
                                      cdn_secret_file=secret_file if arm == "hubchaos" else None, extra=extra)
            setup[arm] = Upstream(REGISTRY_URL, proxy.ca_file, https_proxy=proxy.url)
        elif arm == "mitmdump-reverse":
            proxy = stack.plain_mitmdump(arm, mode=f"reverse:https://127.0.0.1:{hub_port}", upstream_ca=ca_file, extra=sets)
            setup[arm] = Upstream(proxy.url, proxy.ca_file)
        elif arm == "hubchaos-reverse":
            proxy = stack.plain_mitmdump(arm, mode=f"reverse:https://127.0.0.1:{hub_port}", upstream_ca=ca_file,
                                         extra=sets + ("-s", str(ADDON), "--set", "hub_control="))
            setup[arm] = Upstream(proxy.url, proxy.ca_file)
    return setup


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _one_pull(stack: Stack, arm: str, upstream: Upstream, expected_bytes: int,
              concurrency: int, watched: dict[str, ManagedProcess]) -> tuple[float, dict[str, float]]:
    """One timed cold pull; returns its seconds and the CPU seconds each process spent on it."""
    mirror_url, process, folder = stack.mirror(arm, upstream)
    try:
        before = {name: cpu_seconds(p) for name, p in watched.items()}
        mirror_before, client_before = cpu_seconds(process), _client_cpu()
        result = pull(mirror_url, REPOSITORY, TAG, concurrency=concurrency)
        cpu = {name: cpu_seconds(p) - before[name] for name, p in watched.items()}
        cpu["mirror"] = cpu_seconds(process) - mirror_before
        cpu["client"] = _client_cpu() - client_before
    finally:
        stack.stop(process)
        shutil.rmtree(folder, ignore_errors=True)
    if result.bytes != expected_bytes:
        raise RuntimeError(f"{arm}: pulled {result.bytes} bytes, expected {expected_bytes}")
    return result.seconds, cpu


def run(args: argparse.Namespace, root: Path) -> dict:
    size = parse_size(args.size)
    print(f"building a {size / 1e6:.0f} MB image ({args.layers} layers)...", flush=True)
    image = build_image(REPOSITORY, TAG, size, seed="bench-passthrough", layers=args.layers)
    expected = sum(blob.size for blob in image.blobs)
    cert = make_server_cert(root / "tls")
    sets: tuple[str, ...] = tuple(x for item in args.proxy_sets for x in ("--set", item))
    # Other work on the machine shows in the wall times (CPU seconds hold up better): say so.
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    mirrors_root = Path(tempfile.mkdtemp(prefix="bench-mirrors-", dir=args.mirror_storage)) if args.mirror_storage else None
    try:
        with Stack(root, mirrors_root) as stack:
            return _measure(args, stack, image, expected, cert, sets)
    finally:
        if mirrors_root is not None:
            shutil.rmtree(mirrors_root, ignore_errors=True)


def _measure(args: argparse.Namespace, stack: Stack, image, expected: int, cert, sets: tuple[str, ...]) -> dict:
    hub_url, hub_storage = stack.hub(cert)
    seed(hub_url, cert.ca_file, REPOSITORY, TAG, image)
    del image
    setup = _start_arms(stack, args.arms, hub_url, hub_storage, cert.ca_file, sets)
    by_name = {p.name: p for p in stack.processes}
    # CPU is charged to the hub, and to each arm's own proxy (and the CDN for hubchaos).
    watched = {arm: {"hub": by_name["hub"]} for arm in args.arms}
    for arm in args.arms:
        if arm in by_name:
            watched[arm]["proxy"] = by_name[arm]
        if arm == "hubchaos":
            watched[arm]["cdn"] = by_name["cdn"]
    times: dict[str, list[float]] = {arm: [] for arm in args.arms}
    cpus: dict[str, list[dict[str, float]]] = {arm: [] for arm in args.arms}
    for round_no in range(args.pulls + 1):  # round 0 warms caches, certificates and page cache
        # Rotate the order each round so no arm always follows the same one.
        order = args.arms[round_no % len(args.arms):] + args.arms[:round_no % len(args.arms)]
        for arm in order:
            seconds, cpu = _one_pull(stack, arm, setup[arm], expected, args.concurrency, watched[arm])
            label = "warm-up" if round_no == 0 else f"round {round_no}"
            spent = " ".join(f"{name}={value:.2f}" for name, value in cpu.items())
            print(f"  {label:8} {arm:17} {seconds:6.2f} s  {expected / seconds / 1e6:7.1f} MB/s"
                  f"   cpu s: {spent}", flush=True)
            if round_no:
                times[arm].append(seconds)
                cpus[arm].append(cpu)
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    base = medians.get("direct")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "load_average_1min_after": os.getloadavg()[0],
        "image_bytes": expected,
        "layers": args.layers,
        "concurrency": args.concurrency,
        "pulls_per_arm": args.pulls,
        "proxy_sets": args.proxy_sets,
        "times_s": times,
        "median_s": medians,
        "median_cpu_s": {arm: {name: statistics.median(c[name] for c in cpus[arm]) for name in cpus[arm][0]}
                         for arm in args.arms},
        "ratio_to_direct": {arm: (m / base if base else None) for arm, m in medians.items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    figures = run_in_scratch(run, args, prefix="bench-passthrough-", keep=args.keep)
    if figures is None:
        return 130
    print(f"\nload average after: {figures['load_average_1min_after']:.2f} (the benchmark itself adds about 1.5)")
    print(f"\n{'arm':17} {'median s':>9} {'MB/s':>7} {'ratio':>6}   pulls (s)")
    for arm, median in figures["median_s"].items():
        ratio = figures["ratio_to_direct"][arm]
        pulls = " ".join(f"{t:.2f}" for t in figures["times_s"][arm])
        print(f"{arm:17} {median:9.2f} {figures['image_bytes'] / median / 1e6:7.1f} "
              f"{ratio:6.2f}   {pulls}" if ratio else f"{arm:17} {median:9.2f}   {pulls}")
    print(f"\nmedian CPU seconds per pull (2 cores: at most {2:.0f} x wall time)")
    for arm, cpu in figures["median_cpu_s"].items():
        total = sum(cpu.values())
        print(f"{arm:17} total {total:5.2f}  " + "  ".join(f"{name} {value:.2f}" for name, value in cpu.items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
