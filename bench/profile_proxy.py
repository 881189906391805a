"""Where a proxy arm of bench/passthrough.py spends its time: pulls through it
under py-spy (sampling, `pip install py-spy` into the venv; not a project
dependency), then the hottest functions by own time and by total time.

    python bench/profile_proxy.py --arm passthrough --pulls 3 [--set stream_large_bodies=1m]

The raw collapsed stacks are kept (--out) for flame graphs (e.g. speedscope).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _hubshaped import HubShaped  # noqa: E402
from _pull import pull  # noqa: E402
from _stack import Stack, seed, stop_on_sigterm  # noqa: E402
from passthrough import LAB_OPTIONS, PROXIED, REPOSITORY, TAG, _start_arms  # noqa: E402

from chaos.images.synth import build_image, parse_size  # noqa: E402


def summarize(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    out = [f"{samples} samples", "", "own time:"]
    out += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    out += ["", "total time (function and what it calls):"]
    out += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", default="passthrough", choices=(*PROXIED, "floor"))
    parser.add_argument("--size", default="256MB")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--pulls", type=int, default=3)
    parser.add_argument("--set", dest="proxy_sets", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("proxy-profile.txt"))
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        parser.error("py-spy not found: pip install py-spy (into the venv, for this investigation only)")
    stop_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    sets = tuple(x for item in args.proxy_sets for x in ("--set", item))
    try:
        image = build_image(REPOSITORY, TAG, parse_size(args.size), seed="bench-passthrough", layers=args.layers)
        with Stack(root) as stack:
            shaped = HubShaped(stack, root)
            lab_sets = tuple(x for item in LAB_OPTIONS.split() for x in ("--set", item))
            upstream = _start_arms(shaped, [args.arm], sets, lab_sets=lab_sets)[0][args.arm]
            seed(next(iter(shaped.hubs.values())), shaped.ca_file, REPOSITORY, TAG, image)
            del image
            proxy = next(p for p in stack.processes if p.name == args.arm)
            sampler = subprocess.Popen([py_spy, "record", "--format", "raw", "--rate", "250", "--nonblocking",
                                        "--pid", str(proxy.pid), "--output", str(args.out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                for _ in range(args.pulls):
                    mirror_url, process, folder = stack.mirror(args.arm, upstream)
                    try:
                        print(f"pull: {pull(mirror_url, REPOSITORY, TAG).seconds:.2f} s", flush=True)
                    finally:
                        stack.stop(process)
                        shutil.rmtree(folder, ignore_errors=True)
            finally:
                sampler.send_signal(2)  # py-spy writes its output on SIGINT
                try:
                    sampler.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    sampler.kill()
                    sampler.wait(timeout=5)
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(summarize(args.out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
