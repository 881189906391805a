"""The fault proxy: mitmdump with addons/hub_chaos.py in regular mode. It
answers for registry-1.docker.io, auth.docker.io and the CDN host, routes them
to the lab (`hub_routes`), redirects blob GETs to signed CDN URLs, records the
tap and takes faults on its control API.

The tuning options and the mitmdump lookup live here so the lab and bench/
run one and the same proxy: what the benchmarks measure is what the lab runs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from chaos.errors import EnvironmentProblem
from chaos.lab.components.launch import LOOPBACK, Launch, clean_env, loopback_url
from chaos.lab.process import require_binary
from chaos.proxy.control_client import ControlClient

ADDON = Path(__file__).resolve().parents[3] / "addons" / "hub_chaos.py"
CA_FILE_NAME = "mitmproxy-ca-cert.pem"

# Lazy: the addon re-routes Hub's host names before anything resolves them.
# (A reverse proxy has one fixed upstream and does without.)
CONNECTION_TUNING = ("--set", "connection_strategy=lazy")
TRANSFER_TUNING = (
    # Blobs stream through instead of being buffered whole.
    "--set", "stream_large_bodies=256k",
    # HTTP/1.1 to both sides: with HTTP/2 mitmproxy spends ~60% more CPU
    # per byte (16 KB frames, h2's per-frame repr); docs/benchmarks.md.
    # Faults then meet HTTP/1.1 clients: `reset` is a TCP RST, never an h2 stream reset.
    "--set", "http2=false",
)  # fmt: skip
PROXY_TUNING = CONNECTION_TUNING + TRANSFER_TUNING
"""How the lab runs mitmdump besides its addon options."""


def mitmdump_binary() -> str:
    """The mitmdump next to this Python: the addon imports chaos, so mitmdump
    must run from the same environment."""
    candidate = Path(sys.executable).with_name("mitmdump")
    if not candidate.exists():
        raise EnvironmentProblem(
            f"mitmdump not found next to {sys.executable}: install hub-chaos with pip (it depends on mitmproxy)"
        )
    return require_binary(str(candidate), "install hub-chaos's Python dependencies (pip install -e .)")


def ca_file(confdir: Path) -> Path:
    """Where mitmproxy writes its CA on first start; clients trust it."""
    return confdir / CA_FILE_NAME


def mitmdump_argv(mitmdump: str, *, port: int, confdir: Path) -> list[str]:
    """What every mitmdump of the lab and bench/ starts with: quiet, on loopback, its own confdir."""
    return [mitmdump, "--quiet", "--listen-host", LOOPBACK, "--listen-port", str(port), "--set", f"confdir={confdir}"]


def fault_proxy(
    *,
    mitmdump: str,
    port: int,
    control_port: int,
    confdir: Path,
    routes: Mapping[str, str],
    cdn_secret_file: Path | None,
    log_path: Path,
    name: str = "proxy",
    extra: Sequence[str] = (),
) -> Launch:
    """routes: role (registry, auth, cdn) -> URL it is served at (`hub_routes`).
    cdn_secret_file: the secret the proxy signs CDN redirects with (and the
    CDN checks them with); None: no redirects, blob GETs go to the registry.
    extra: more mitmdump arguments, after the lab's own."""
    argv = [
        *mitmdump_argv(mitmdump, port=port, confdir=confdir),
        *PROXY_TUNING,
        "-s", str(ADDON),
        "--set", "hub_routes=" + ",".join(f"{role}={url}" for role, url in routes.items()),
    ]  # fmt: skip
    if cdn_secret_file is not None:
        # Blob GETs answer 307 to the CDN host, as Hub's do, with URLs the CDN can check.
        argv += ["--set", f"hub_cdn_secret_file={cdn_secret_file}"]
    argv += ["--set", f"hub_control={LOOPBACK}:{control_port}", *extra]
    control_url, ca = loopback_url(control_port), ca_file(confdir)

    def ready() -> bool:
        # The CA too: a client started right after must find the file it trusts.
        with ControlClient(control_url, timeout=1.0) as control:
            return bool(control.health()) and ca.exists()

    return Launch(name, tuple(argv), ready, log_path, url=loopback_url(port), env=clean_env())
