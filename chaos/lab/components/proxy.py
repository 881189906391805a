"""The fault proxy: mitmdump with addons/hub_chaos.py in regular mode. It
answers for registry-1.docker.io, auth.docker.io and the CDN host, routes them
to the lab (`hub_routes`), redirects blob GETs to signed CDN URLs, records the
tap and takes faults on its control API.

With `origins`, it listens once per origin (`--mode regular@PORT` each) and
tells the addon which port is whose (ORIGINS_OPTION), so every tap event says
who asked: the mirror, the client engine, the push registry.

The tuning options and the mitmdump lookup live here so the lab and bench/
run one and the same proxy: what the benchmarks measure is what the lab runs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from chaos.errors import EnvironmentProblem
from chaos.lab.components.launch import LOOPBACK, Launch, clean_env, loopback_url
from chaos.lab.ports import is_listening
from chaos.lab.process import require_binary
from chaos.proxy.control_client import ControlClient
from chaos.shipped import addon_path

ADDON = addon_path()  # from the package: a wheel install has no repository folders
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

ADDON_TUNING = (
    # The mirror's many small registry and token requests share one HTTP/2
    # connection instead of a CONNECT and two TLS handshakes each (a cold pull
    # through the proxy opened ~20 registry connections over HTTP/1.1); CDN
    # downloads stay HTTP/1.1 (relayed unopened, or intercepted for a fault:
    # cheaper per byte, and a reset fault is a TCP reset). docs/benchmarks.md.
    "--set", "hub_http2_roles=registry,auth",
)  # fmt: skip
"""The addon options the lab sets besides routes, secret, origins and control."""

ORIGINS_OPTION = "hub_origins"
"""The addon option naming each listener's origin, as ORIGIN=PORT pairs
(origins_value). mitmproxy keeps a --set for an option no addon declares
without complaint, so this works before and after the addon knows it."""


def routes_value(routes: Mapping[str, str]) -> str:
    """The addon's hub_routes value: "registry=URL,auth=URL,cdn=URL"."""
    return ",".join(f"{role}={url}" for role, url in routes.items())


def origins_value(origins: Mapping[str, int]) -> str:
    """ORIGINS_OPTION's value: "mirror=PORT,client=PORT,push-registry=PORT"."""
    return ",".join(f"{origin}={port}" for origin, port in origins.items())


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


# No line per flow, and none of mitmproxy's own chatter: the log keeps what a
# person debugging a run needs, which the addon logs (faults on and off,
# refused hosts, control API errors, routes and origins).
QUIET_LOG = ("--set", "termlog_verbosity=alert", "--set", "flow_detail=0")


def mitmdump_argv(mitmdump: str, *, port: int | None, confdir: Path) -> list[str]:
    """What every mitmdump of the lab and bench/ starts with: a quiet log, on
    loopback, its own confdir; port None: the caller gives its ports with --mode MODE@PORT."""
    argv = [mitmdump, *QUIET_LOG, "--listen-host", LOOPBACK]
    if port is not None:
        argv += ["--listen-port", str(port)]
    return argv + ["--set", f"confdir={confdir}"]


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
    origins: Mapping[str, int] | None = None,
    upstream_ca: Path | None = None,
) -> Launch:
    """routes: role (registry, auth, cdn) -> URL it is served at (`hub_routes`).
    cdn_secret_file: the secret the proxy signs CDN redirects with (and the
    CDN checks them with); None: no redirects, blob GETs go to the registry.
    extra: more mitmdump arguments, after the lab's own.
    origins: origin (chaos.vocab.names.ORIGINS) -> a port of its own; `port`
    is then one of them (the launch's url: the client's listener, say). All
    ports must differ. None: one listener on `port`, which names no origin.
    upstream_ca: the CA that upstreams serving TLS (the lab's CDN) are trusted by,
    when the proxy intercepts them (ssl_verify_upstream_trusted_ca). When it is
    this proxy's own CA (ca_file(confdir)), the clients trust those upstreams
    too, and the proxy relays their tunnels unopened while no fault could match
    them (hub_passthrough: the bulk of a pull's bytes never decrypted)."""
    listeners = dict(origins or {})
    if listeners:
        if port not in listeners.values():
            raise ValueError(f"fault_proxy: port {port} is none of the origins' ports {listeners}")
        if len(set(listeners.values())) != len(listeners):
            raise ValueError(f"fault_proxy: two origins share a port: {listeners}")
        modes = [arg for listener in listeners.values() for arg in ("--mode", f"regular@{listener}")]
        head = [*mitmdump_argv(mitmdump, port=None, confdir=confdir), *modes]
    else:
        head = mitmdump_argv(mitmdump, port=port, confdir=confdir)
    argv = [
        *head,
        *PROXY_TUNING,
        "-s", str(ADDON),
        *ADDON_TUNING,
        "--set", f"hub_routes={routes_value(routes)}",
    ]  # fmt: skip
    if upstream_ca is not None:
        argv += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        if Path(upstream_ca) == ca_file(confdir):
            argv += ["--set", "hub_passthrough=true"]
    if cdn_secret_file is not None:
        # Blob GETs answer 307 to the CDN host, as Hub's do, with URLs the CDN can check.
        argv += ["--set", f"hub_cdn_secret_file={cdn_secret_file}"]
    if listeners:
        argv += ["--set", f"{ORIGINS_OPTION}={origins_value(listeners)}"]
    argv += ["--set", f"hub_control={LOOPBACK}:{control_port}", *extra]
    control_url, ca = loopback_url(control_port), ca_file(confdir)
    ports = sorted(set(listeners.values()) | {port})

    def ready() -> bool:
        # The CA too: a client started right after must find the file it trusts;
        # and every listener, or a component told to use one would find it closed.
        with ControlClient(control_url, timeout=1.0) as control:
            return bool(control.health()) and ca.exists() and all(is_listening(p) for p in ports)

    return Launch(name, tuple(argv), ready, log_path, url=loopback_url(port), env=clean_env(),
                  ports=(*ports, control_port))
