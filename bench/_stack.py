"""The benchmark's processes: a TLS hub, the blob CDN, fault proxies and fresh mirrors.

Everything listens on 127.0.0.1 on ports picked at run time. Every process is
started from the lab's own launcher (chaos.lab.components: same command line,
same clean environment, same readiness check) as a
chaos.lab.process.ManagedProcess: its own session, a readiness check with a
deadline, its whole group killed on stop, and a death signal should this
process itself be killed. Stack.close() stops them all and is called from a
finally, so Ctrl-C (and SIGTERM, see stop_on_sigterm) leave nothing behind.

What differs from the lab is said here, as extra arguments to those launchers:
the hub is a plain registry serving TLS (so every arm's mirror talks TLS to
its upstream), proxies trust that hub's CA (ssl_verify_upstream_trusted_ca),
the CDN logs its requests to a file of their own, a proxy may run under
cProfile, and plain_mitmdump runs mitmproxy with no addon as the reference.
The fault proxy keeps the lab's tuning (chaos.lab.components.proxy.PROXY_TUNING:
lazy connections, streamed bodies, HTTP/1.1), so what is measured here is what
the lab runs; `--set http2=true` measures mitmproxy's default instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

import requests
from _tls import ServerCert

from chaos.images.push import push_image
from chaos.images.synth import SyntheticImage
from chaos.lab.binaries import require_docker_registry
from chaos.lab.components import cdn as lab_cdn
from chaos.lab.components import mirror as lab_mirror
from chaos.lab.components import proxy as lab_proxy
from chaos.lab.components.launch import READY_DEADLINE_S, Launch, http_ok, loopback_url
from chaos.lab.components.registry import serve_registry
from chaos.lab.ports import free_port, free_ports
from chaos.lab.process import ManagedProcess
from chaos.lab.registry_config import push_config


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the finally blocks tear down as on Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def write_figures(path: Path | None, figures: dict) -> None:
    """A benchmark's figures as JSON (--json), for run_all.py and bench/results.json."""
    if path:
        path.write_text(json.dumps(figures, indent=2) + "\n")


def run_in_scratch(run: Callable, args, *, prefix: str, keep: Path | None = None):
    """run(args, root) in a scratch folder (or `keep`, left in place), with
    SIGTERM handled like Ctrl-C; returns its figures, or None when interrupted
    (every process is stopped by then, by the stacks' finally blocks)."""
    stop_on_sigterm()
    root = keep or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run(args, root)
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        return None
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Proxy:
    url: str  # http://127.0.0.1:PORT (regular mode) or https://... (reverse mode)
    ca_file: Path  # the proxy's CA, for SSL_CERT_FILE
    control_url: str | None
    process: ManagedProcess


@dataclass(frozen=True)
class Upstream:
    """What a fresh mirror is put in front of, and how it reaches it."""

    remote_url: str
    ca_file: Path  # SSL_CERT_FILE: the hub's CA, or the proxy's
    https_proxy: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


class Stack:
    def __init__(self, root: Path, mirrors_root: Path | None = None):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # Mirror storage: a RAM-backed folder keeps disk write-back (of this pull
        # or the previous arm's) out of the figures.
        self.mirrors_root = mirrors_root or self.root / "mirrors"
        self.processes: list[ManagedProcess] = []
        self.registry = require_docker_registry()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def start(self, launch: Launch) -> ManagedProcess:
        process = launch.process()
        self.processes.append(process)
        process.start()
        process.wait_ready(launch.ready, READY_DEADLINE_S)
        return process

    def stop(self, process: ManagedProcess) -> None:
        process.stop()
        self.processes.remove(process)

    # -- components ---------------------------------------------------------

    def hub(self, cert: ServerCert) -> tuple[str, Path]:
        """A plain (no auth) distribution registry serving TLS; returns its URL and storage."""
        port = free_port()
        storage = self.root / "hub" / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = push_config(storage, port)
        config["http"]["tls"] = {"certificate": str(cert.cert_file), "key": str(cert.key_file)}
        url = loopback_url(port, "https")
        self.start(serve_registry("hub", binary=self.registry, config=config, config_path=self.root / "hub" / "config.yml",
                                  log_path=self.log("hub"), url=url, ready=http_ok(f"{url}/v2/", verify=str(cert.ca_file))))
        return url, storage

    def cdn(self, storage: Path) -> tuple[str, Path]:
        """The lab's blob CDN over the hub's storage; returns its URL and secret file."""
        secret_file = lab_cdn.write_secret(self.root / "cdn-secret")
        launch = lab_cdn.blob_cdn(port=free_port(), storage=storage, secret_file=secret_file, log_path=self.log("cdn"),
                                  request_log=self.log("cdn-requests"))
        self.start(launch)
        return launch.url, secret_file

    def fault_proxy(self, name: str, *, routes: Mapping[str, str], upstream_ca: Path, cdn_secret_file: Path | None,
                    extra: tuple[str, ...] = (), profile_to: Path | None = None) -> Proxy:
        """The lab's fault proxy (mitmdump + addons/hub_chaos.py, regular mode), trusting the TLS hub."""
        port, control_port = free_ports(2)
        confdir = self.root / name
        launch = lab_proxy.fault_proxy(
            mitmdump=lab_proxy.mitmdump_binary(), port=port, control_port=control_port, confdir=confdir,
            routes=routes, cdn_secret_file=cdn_secret_file, log_path=self.log(name), name=name,
            extra=("--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}", *extra),
        )
        if profile_to is not None:
            launch = replace(launch, argv=(sys.executable, "-m", "cProfile", "-o", str(profile_to), *launch.argv))
        process = self.start(launch)
        return Proxy(launch.url, lab_proxy.ca_file(confdir), loopback_url(control_port), process)

    def plain_mitmdump(self, name: str, *, mode: str, upstream_ca: Path, extra: tuple[str, ...] = ()) -> Proxy:
        """mitmdump with no addon: the reference for what mitmproxy itself costs."""
        port = free_port()
        confdir = self.root / name
        argv = (
            *lab_proxy.mitmdump_argv(lab_proxy.mitmdump_binary(), port=port, confdir=confdir),
            "--mode", mode,
            *lab_proxy.TRANSFER_TUNING,  # not the connection tuning: a reverse proxy has one fixed upstream
            "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
            *extra,
        )  # fmt: skip
        ca_file = lab_proxy.ca_file(confdir)
        url = loopback_url(port, "https" if mode.startswith("reverse:") else "http")

        def ready() -> bool:
            if not ca_file.exists():
                return False
            try:
                requests.get(f"{url}/v2/", timeout=1.0, verify=str(ca_file))
            except requests.exceptions.SSLError:
                return True  # answering TLS at all is ready
            return True

        process = self.start(Launch(name, argv, ready, self.log(name), url=url))
        return Proxy(url, ca_file, None, process)

    def mirror(self, name: str, upstream: Upstream) -> tuple[str, ManagedProcess, Path]:
        """A fresh pull-through mirror (empty storage) in front of upstream."""
        folder = self.mirrors_root / name
        shutil.rmtree(folder, ignore_errors=True)
        storage = folder / "storage"
        storage.mkdir(parents=True)
        launch = lab_mirror.pull_through_mirror(
            binary=self.registry, port=free_port(), storage=storage, config_path=folder / "config.yml",
            log_path=self.log(f"mirror-{name}"), remote_url=upstream.remote_url, https_proxy=upstream.https_proxy,
            ca_file=upstream.ca_file, extra_env=upstream.extra_env, name=f"mirror-{name}",
        )
        return launch.url, self.start(launch), folder


def seed(hub_url: str, ca_file: Path, repository: str, tag: str, image: SyntheticImage) -> str:
    session = requests.Session()
    session.trust_env = False  # never through a proxy
    session.verify = str(ca_file)
    with session:
        return push_image(hub_url, repository, tag, image, session=session, timeout=120.0)


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(process: ManagedProcess) -> float:
    """User plus system CPU time the process (not its children) has used so far."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime (fields 14, 15)
