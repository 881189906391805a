"""Pass-through cost of the fault proxy, on a Hub-shaped set-up.

A cold pull of a 256 MB image through a fresh pull-through mirror (the
distribution registry, proxy mode, empty storage for every pull), with and
without the fault proxy between the mirror and "Hub". Hub-shaped: the hub
registry answers blob GETs with 307 to a blob CDN, which serves every blob
byte over TLS (bench/_hubshaped.py); the same hub storage, the same CDN
process and the same mirror binary in every arm; arms alternated round by
round (the order rotated each round), one untimed warm-up round first.
Prints each arm's pull times, the median, the ratio of medians against the
direct arm, CPU seconds per process, and what the proxy's tap saw of the CDN.

Arms:
  direct           mirror --TLS--> hub; 307 --TLS--> CDN. No proxy.
  passthrough      mirror --HTTPS_PROXY--> fault proxy (the lab's: mitmdump + hub_chaos,
                   its tuning) --> hub; 307 from CdnRedirect; the CDN tunnel relayed
                   unopened (no fault active)
  intercepted      the same proxy with a CDN fault active (latency, 1 ms, roles [cdn]):
                   every CDN byte decrypted and re-encrypted
  before           the same proxy as the lab ran it before issue 13: no pass-through, HTTP/1.1 everywhere
  floor            plain mitmdump with a bare routing script, intercepting everything
                   (the hub redirects to the CDN host itself): what mitmproxy's
                   interception costs with no addon logic

The last line is `pass-through ratio: X.XX` (median passthrough / median direct).

Run from the venv:  python bench/passthrough.py [--pulls 5] [--arms direct,passthrough,...]
Nothing leaves loopback; every process is killed at the end, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hubshaped import HubShaped  # noqa: E402
from _pull import pull  # noqa: E402
from _stack import Stack, Upstream, cpu_seconds, run_in_scratch, seed, write_figures  # noqa: E402

from chaos.images.synth import build_image, parse_size  # noqa: E402
from chaos.lab.process import ManagedProcess  # noqa: E402
from chaos.proxy.control_client import ControlClient  # noqa: E402
from chaos.vocab.hub import CDN_HOST, REGISTRY_URL  # noqa: E402

ARMS = ("direct", "passthrough", "intercepted", "before", "floor")
PROXIED = ("passthrough", "intercepted", "before")
REPOSITORY, TAG = "bench/big", "latest"
LAB_OPTIONS = "hub_http2_roles=registry,auth hub_passthrough=true"
"""What the lab patch of issue 13 gives the lab's fault proxy (chaos.lab.components.proxy);
bench/_hubshaped.py leaves out any the lab's launcher sets already."""
CDN_FAULT = {"name": "bench-cdn", "kind": "latency", "params": {"delay_ms": 1}, "match": {"roles": ["cdn"]},
             "ttl_s": 86400}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="256MB", help="image size (default 256MB = 256 000 000 bytes)")
    parser.add_argument("--layers", type=int, default=4, help="layers in the image (default 4)")
    parser.add_argument("--pulls", type=int, default=5, help="timed pulls per arm (default 5)")
    parser.add_argument("--concurrency", type=int, default=3, help="blobs fetched at once (default 3, as dockerd)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from: {', '.join(ARMS)}")
    parser.add_argument("--set", dest="proxy_sets", action="append", default=[], metavar="OPTION=VALUE",
                        help="extra mitmdump option for every proxy arm (repeatable)")
    parser.add_argument("--http2", action="store_true",
                        help="run the fault proxies with mitmproxy's default http2=true instead of the lab's http2=false")
    parser.add_argument("--lab-options", default=LAB_OPTIONS,
                        help="addon options the lab patch of issue 13 adds to the fault proxy (comma-free values"
                             " separated by spaces; default %(default)s; '' for none)")
    parser.add_argument("--hub-plain", action="store_true",
                        help="the proxied arms' hub serves plain HTTP (the lab's hub before issue 13's patch)")
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
    if "direct" not in args.arms:
        parser.error("the direct arm is the reference: keep it in --arms")
    if args.pulls < 1:
        parser.error("--pulls must be at least 1")
    return args


def _start_arms(shaped: HubShaped, arms: list[str], sets: tuple[str, ...], http2: bool = False,
                lab_sets: tuple[str, ...] = (), hub_plain: bool = False) -> tuple[dict[str, Upstream], dict]:
    """For each arm, what its mirrors are put in front of; and each arm's processes and control URL."""
    cdn_url = shaped.cdn()
    setup: dict[str, Upstream] = {}
    parts: dict[str, dict] = {}
    lab_hub = shaped.hub("hub-lab", tls=not hub_plain) if any(a in PROXIED for a in arms) else None
    for arm in arms:
        if arm == "direct":
            hub = shaped.hub("hub-direct", redirect_to=cdn_url)
            setup[arm] = Upstream(hub, shaped.ca_file)
            parts[arm] = {"hub": "hub-direct"}
        elif arm in PROXIED:
            extra = (() if arm == "before" else lab_sets) + sets
            drop = ("hub_http2_roles", "hub_passthrough") if arm == "before" else ()
            proxy = shaped.fault_proxy(arm, lab_hub, extra=extra, http2=http2, drop=drop)
            if arm == "intercepted":
                with ControlClient(proxy.control_url, timeout=5.0) as control:
                    control.add(CDN_FAULT)
            setup[arm] = Upstream(REGISTRY_URL, proxy.ca_file, https_proxy=proxy.url)
            parts[arm] = {"hub": "hub-lab", "proxy": arm, "control": proxy.control_url}
        elif arm == "floor":
            hub = shaped.hub("hub-floor", redirect_to=f"https://{CDN_HOST}")
            proxy = shaped.floor_proxy(arm, hub, extra=sets)
            setup[arm] = Upstream(REGISTRY_URL, proxy.ca_file, https_proxy=proxy.url)
            parts[arm] = {"hub": "hub-floor", "proxy": arm}
    return setup, parts


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _main_thread_cpu(process: ManagedProcess) -> float:
    """CPU seconds of the process's main thread alone: for mitmdump, its event
    loop, apart from the pass-through relay threads."""
    try:
        fields = Path(f"/proc/{process.pid}/task/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cdn_seen(control_url: str | None, cursor: int) -> tuple[int, dict]:
    """What the proxy's tap saw of the CDN since `cursor`: relayed tunnel periods,
    intercepted requests, and their bytes."""
    if control_url is None:
        return cursor, {}
    with ControlClient(control_url, timeout=5.0) as control:
        deadline = time.monotonic() + 10
        while control.health()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        page = control.events(after=cursor, limit=10000)
    cdn = [e for e in page.events if e["role"] == "cdn"]
    relayed = [e for e in cdn if e.get("tunnel")]
    seen = {"relayed_events": len(relayed), "relayed_bytes": sum(e["bytes"] for e in relayed),
            "intercepted_events": len(cdn) - len(relayed), "intercepted_bytes": sum(e["bytes"] for e in cdn if not e.get("tunnel")),
            "faulted": sum(1 for e in cdn if e["fault"])}
    return page.next, seen


def _one_pull(stack: Stack, arm: str, upstream: Upstream, expected_bytes: int, concurrency: int,
              watched: dict[str, ManagedProcess]) -> tuple[float, dict[str, float]]:
    """One timed cold pull; returns its seconds and the CPU seconds each process spent on it."""
    mirror_url, process, folder = stack.mirror(arm, upstream)
    try:
        before = {name: cpu_seconds(p) for name, p in watched.items()}
        loop_before = _main_thread_cpu(watched["proxy"]) if "proxy" in watched else 0.0
        mirror_before, client_before = cpu_seconds(process), _client_cpu()
        result = pull(mirror_url, REPOSITORY, TAG, concurrency=concurrency)
        cpu = {name: cpu_seconds(p) - before[name] for name, p in watched.items()}
        if "proxy" in watched:
            cpu["proxy-loop"] = _main_thread_cpu(watched["proxy"]) - loop_before
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
    sets: tuple[str, ...] = tuple(x for item in args.proxy_sets for x in ("--set", item))
    lab_sets = tuple(x for item in args.lab_options.split() for x in ("--set", item))
    load_before = os.getloadavg()[0]
    # Other work on the machine shows in the wall times (CPU seconds hold up better): say so.
    print(f"load average before: {load_before:.2f}", flush=True)
    mirrors_root = Path(tempfile.mkdtemp(prefix="bench-mirrors-", dir=args.mirror_storage)) if args.mirror_storage else None
    try:
        with Stack(root, mirrors_root) as stack:
            shaped = HubShaped(stack, root)
            figures = _measure(args, shaped, image, expected, sets, lab_sets)
    finally:
        if mirrors_root is not None:
            shutil.rmtree(mirrors_root, ignore_errors=True)
    figures["load_average_1min_before"] = load_before
    return figures


def _measure(args: argparse.Namespace, shaped: HubShaped, image, expected: int, sets: tuple[str, ...],
             lab_sets: tuple[str, ...]) -> dict:
    stack = shaped.stack
    setup, parts = _start_arms(shaped, args.arms, sets, args.http2, lab_sets, args.hub_plain)
    by_name = {p.name: p for p in stack.processes}
    seed(next(iter(shaped.hubs.values())), shaped.ca_file, REPOSITORY, TAG, image)  # one storage behind every hub
    del image
    # CPU is charged to the arm's hub, the CDN and the arm's own proxy.
    watched = {arm: {"hub": by_name[parts[arm]["hub"]], "cdn": by_name["cdn"],
                     **({"proxy": by_name[parts[arm]["proxy"]]} if "proxy" in parts[arm] else {})}
               for arm in args.arms}
    cursors = {arm: 0 for arm in args.arms}
    times: dict[str, list[float]] = {arm: [] for arm in args.arms}
    cpus: dict[str, list[dict[str, float]]] = {arm: [] for arm in args.arms}
    seen: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    for round_no in range(args.pulls + 1):  # round 0 warms caches, certificates and page cache
        order = args.arms[round_no % len(args.arms):] + args.arms[:round_no % len(args.arms)]
        for arm in order:
            seconds, cpu = _one_pull(stack, arm, setup[arm], expected, args.concurrency, watched[arm])
            cursors[arm], tap = _cdn_seen(parts[arm].get("control"), cursors[arm])
            label = "warm-up" if round_no == 0 else f"round {round_no}"
            spent = " ".join(f"{name}={value:.2f}" for name, value in cpu.items())
            tap_text = f"  tap cdn: {tap['relayed_events']} relayed {tap['relayed_bytes'] / 1e6:.1f} MB," \
                       f" {tap['intercepted_events']} intercepted {tap['intercepted_bytes'] / 1e6:.1f} MB" if tap else ""
            print(f"  {label:8} {arm:16} {seconds:6.2f} s  {expected / seconds / 1e6:7.1f} MB/s"
                  f"   cpu s: {spent}{tap_text}", flush=True)
            if round_no:
                times[arm].append(seconds)
                cpus[arm].append(cpu)
                seen[arm].append(tap)
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    base = medians["direct"]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "load_average_1min_after": os.getloadavg()[0],
        "image_bytes": expected,
        "layers": args.layers,
        "concurrency": args.concurrency,
        "pulls_per_arm": args.pulls,
        "proxy_sets": args.proxy_sets,
        "lab_options": args.lab_options,
        "times_s": times,
        "median_s": medians,
        "median_cpu_s": {arm: {name: statistics.median(c[name] for c in cpus[arm]) for name in cpus[arm][0]}
                         for arm in args.arms},
        "ratio_to_direct": {arm: m / base for arm, m in medians.items()},
        "tap": seen,
    }


def report(figures: dict) -> str:
    lines = [f"\nload average before {figures['load_average_1min_before']:.2f}, after {figures['load_average_1min_after']:.2f}"
             " (the benchmark itself adds about 1.5)",
             f"\n{'arm':16} {'median s':>9} {'MB/s':>7} {'ratio':>6}   pulls (s)"]
    for arm, median in figures["median_s"].items():
        pulls = " ".join(f"{t:.2f}" for t in figures["times_s"][arm])
        lines.append(f"{arm:16} {median:9.2f} {figures['image_bytes'] / median / 1e6:7.1f} "
                     f"{figures['ratio_to_direct'][arm]:6.2f}   {pulls}")
    lines.append("\nmedian CPU seconds per pull (2 cores: at most 2 x wall time)")
    for arm, cpu in figures["median_cpu_s"].items():
        total = sum(value for name, value in cpu.items() if name != "proxy-loop")  # part of proxy
        lines.append(f"{arm:16} total {total:5.2f}  " + "  ".join(f"{name} {value:.2f}" for name, value in cpu.items()))
    if "passthrough" in figures["median_s"]:
        lines.append(f"\npass-through ratio: {figures['ratio_to_direct']['passthrough']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    figures = run_in_scratch(run, args, prefix="bench-passthrough-", keep=args.keep)
    if figures is None:
        return 130
    write_figures(args.json, figures)
    print(report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
