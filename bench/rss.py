"""The fault proxy's memory while it streams 1 GB through a bandwidth fault.

One 1 GB blob on the blob CDN (Hub-shaped, bench/_hubshaped.py), downloaded
through the lab's fault proxy three ways, one after the other:

  bandwidth    a `bandwidth` fault on role cdn (rate_kbps, default 200000 =
               200 MB/s): every byte decrypted, paced and re-encrypted
  intercepted  a fault that could match the CDN but does not touch bodies
               (latency 1 ms): decrypted and re-encrypted at full speed
  relayed      no fault: the tunnel relayed unopened (pass-through)

The proxy's resident set (VmRSS, /proc/PID/status) is sampled every 50 ms:
before, the highest while streaming, after. The figure is the highest with
the bandwidth fault (target 150 MB).

Run from the venv:  python bench/rss.py [--gigabytes 1] [--rate-kbps 200000] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hubshaped import HubShaped  # noqa: E402
from _stack import Stack, run_in_scratch, write_figures  # noqa: E402
from passthrough import LAB_OPTIONS  # noqa: E402

from chaos.proxy.control_client import ControlClient  # noqa: E402
from chaos.vocab.hub import CDN_HOST  # noqa: E402

CHUNK = 1 << 20
TIMEOUT_S = 120


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """VmRSS of a process every `interval_s`, in a thread, until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), rss_bytes(self.pid)))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def write_blob(storage: Path, size: int) -> tuple[str, int]:
    """A blob of `size` bytes in the hub storage, the CDN's path to it and its size."""
    block = os.urandom(CHUNK)
    digest = hashlib.sha256()
    for _ in range(size // CHUNK):
        digest.update(block)
    hex_digest = digest.hexdigest()
    folder = storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_digest[:2] / hex_digest
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data", "wb") as out:
        for _ in range(size // CHUNK):
            out.write(block)
    return f"/docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data", (size // CHUNK) * CHUNK


def download(proxy_url: str, ca_file: Path, path: str) -> tuple[int, float]:
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": proxy_url}
    session.verify = str(ca_file)
    started = time.perf_counter()
    got = 0
    with session, session.get(f"https://{CDN_HOST}{path}", stream=True, timeout=TIMEOUT_S) as response:
        response.raise_for_status()
        for chunk in response.iter_content(CHUNK):
            got += len(chunk)
    return got, time.perf_counter() - started


def run(args: argparse.Namespace, root: Path) -> dict:
    size = int(args.gigabytes * 1e9)
    with Stack(root) as stack:
        shaped = HubShaped(stack, root)
        path, size = write_blob(shaped.storage, size)
        shaped.cdn()
        proxy = shaped.fault_proxy("proxy", shaped.hub("hub-lab"),
                                   extra=tuple(x for item in LAB_OPTIONS.split() for x in ("--set", item)))
        pid = proxy.process.pid
        figures: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "blob_bytes": size, "rate_kbps": args.rate_kbps}
        ways = {
            "bandwidth": {"name": "bench-bandwidth", "kind": "bandwidth", "params": {"rate_kbps": args.rate_kbps},
                          "match": {"roles": ["cdn"]}, "ttl_s": 3600},
            "intercepted": {"name": "bench-watch", "kind": "latency", "params": {"delay_ms": 1},
                            "match": {"roles": ["cdn"]}, "ttl_s": 3600},
            "relayed": None,
        }
        with ControlClient(proxy.control_url, timeout=10) as control:
            for way, fault in ways.items():
                control.reset()
                if fault:
                    control.add(fault)
                time.sleep(0.5)
                before = rss_bytes(pid)
                with Sampler(pid) as sampler:
                    got, seconds = download(proxy.url, proxy.ca_file, path)
                    time.sleep(0.5)
                after = rss_bytes(pid)
                if got != size:
                    raise RuntimeError(f"{way}: got {got} bytes of {size}")
                figures[way] = {"seconds": seconds, "bytes_per_s": got / seconds, "rss_before": before,
                                "rss_max": max(s for _, s in sampler.samples), "rss_after": after,
                                "samples": len(sampler.samples)}
                print(f"  {way:12} {got / seconds / 1e6:7.1f} MB/s  RSS before {before / 1e6:6.1f} MB,"
                      f" max {figures[way]['rss_max'] / 1e6:6.1f} MB, after {after / 1e6:6.1f} MB", flush=True)
            control.reset()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--rate-kbps", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    figures = run_in_scratch(run, args, prefix="bench-rss-")
    if figures is None:
        return 130
    figures["load_average_1min_before"] = load_before
    figures["load_average_1min_after"] = os.getloadavg()[0]
    print(f"proxy RSS streaming {figures['blob_bytes'] / 1e9:.1f} GB through a bandwidth fault"
          f" ({figures['rate_kbps'] / 1000:.0f} MB/s): max {figures['bandwidth']['rss_max'] / 1e6:.1f} MB")
    write_figures(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
