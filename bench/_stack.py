"""The benchmark's processes: a TLS hub, the blob CDN, fault proxies and fresh mirrors.

Everything listens on 127.0.0.1 on ports picked at run time. Every process is
a chaos.lab.process.ManagedProcess: its own session, a readiness check with a
deadline, its whole group killed on stop, and a death signal should this
process itself be killed. Stack.close() stops them all and is called from a
finally, so Ctrl-C (and SIGTERM, see stop_on_sigterm) leave nothing behind.

The fault proxy is started with the lab's own options (chaos.lab.lab.PROXY_TUNING:
lazy connections, streamed bodies, HTTP/1.1), so what is measured here is what
the lab runs; `--set http2=true` measures mitmproxy's default instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from chaos.images.push import push_image
from chaos.images.synth import SyntheticImage
from chaos.lab.lab import PROXY_TUNING
from chaos.lab.ports import free_port
from chaos.lab.process import ManagedProcess, require_binary
from chaos.lab.registry_config import mirror_config, push_config, write_config
from chaos.proxy.control_client import ControlClient

from _tls import ServerCert

READY_DEADLINE_S = 30.0
HUB_HOST = "registry-1.docker.io"
ADDON = Path(__file__).resolve().parents[1] / "addons" / "hub_chaos.py"


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the finally blocks tear down as on Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


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


def mitmdump_path() -> str:
    return require_binary(str(Path(sys.executable).with_name("mitmdump")), "run from the project's venv")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # No proxy settings from the caller's environment may leak into a child.
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
    keep.update(extra or {})
    return keep


@dataclass(frozen=True)
class Proxy:
    url: str  # http://127.0.0.1:PORT (regular mode) or https://... (reverse mode)
    ca_file: Path  # the proxy's CA, for SSL_CERT_FILE
    control_url: str | None
    process: ManagedProcess


class Stack:
    def __init__(self, root: Path, mirrors_root: Path | None = None):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # Mirror storage: a RAM-backed folder keeps disk write-back (of this pull
        # or the previous arm's) out of the figures.
        self.mirrors_root = mirrors_root or self.root / "mirrors"
        self.processes: list[ManagedProcess] = []
        self.registry = require_binary("docker-registry", "apt-get install docker-registry")

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def start(self, name: str, argv: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.root / "logs" / f"{name}.log", env=_env(env))
        self.processes.append(process)
        process.start()
        process.wait_ready(ready, READY_DEADLINE_S)
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
        path = write_config(config, self.root / "hub" / "config.yml")
        url = f"https://127.0.0.1:{port}"
        self.start("hub", [self.registry, "serve", str(path)],
                   lambda: requests.get(f"{url}/v2/", timeout=1.0, verify=str(cert.ca_file)).ok)
        return url, storage

    def cdn(self, storage: Path) -> tuple[str, Path]:
        """chaos.lab.cdn_service over the hub's storage; returns its URL and secret file."""
        port = free_port()
        secret_file = self.root / "cdn-secret"
        secret_file.write_text(secrets.token_hex(32) + "\n")
        url = f"http://127.0.0.1:{port}"
        self.start("cdn", [sys.executable, "-m", "chaos.lab.cdn_service", "--storage", str(storage),
                           "--secret-file", str(secret_file), "--port", str(port),
                           "--log", str(self.root / "logs" / "cdn-requests.log")],
                   lambda: requests.get(f"{url}/healthz", timeout=1.0).ok)
        return url, secret_file

    def fault_proxy(self, name: str, *, routes: str, upstream_ca: Path, cdn_secret_file: Path | None,
                    extra: tuple[str, ...] = (), profile_to: Path | None = None) -> Proxy:
        """mitmdump with addons/hub_chaos.py in regular mode, as the lab starts it."""
        port, control_port = free_port(), free_port()
        confdir = self.root / name
        argv = [
            mitmdump_path(), "--quiet",
            "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--set", f"confdir={confdir}",
            *PROXY_TUNING,
            "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
            "-s", str(ADDON),
            "--set", f"hub_routes={routes}",
            "--set", f"hub_control=127.0.0.1:{control_port}",
        ]
        if cdn_secret_file is not None:
            argv += ["--set", f"hub_cdn_secret_file={cdn_secret_file}"]
        argv += list(extra)
        if profile_to is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile_to)] + argv
        control_url = f"http://127.0.0.1:{control_port}"
        control = ControlClient(control_url, timeout=1.0)
        ca_file = confdir / "mitmproxy-ca-cert.pem"
        process = self.start(name, argv, lambda: bool(control.health()) and ca_file.exists())
        return Proxy(f"http://127.0.0.1:{port}", ca_file, control_url, process)

    def plain_mitmdump(self, name: str, *, mode: str, upstream_ca: Path, extra: tuple[str, ...] = ()) -> Proxy:
        """mitmdump with no addon: the reference for what mitmproxy itself costs."""
        port = free_port()
        confdir = self.root / name
        argv = [
            mitmdump_path(), "--quiet",
            "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--set", f"confdir={confdir}",
            "--mode", mode,
            *PROXY_TUNING[2:],  # not connection_strategy: a reverse proxy has one fixed upstream
            "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
            *extra,
        ]
        ca_file = confdir / "mitmproxy-ca-cert.pem"
        scheme = "https" if mode.startswith("reverse:") else "http"
        url = f"{scheme}://127.0.0.1:{port}"

        def ready() -> bool:
            if not ca_file.exists():
                return False
            try:
                requests.get(f"{url}/v2/", timeout=1.0, verify=str(ca_file))
            except requests.exceptions.SSLError:
                return True  # answering TLS at all is ready
            return True

        process = self.start(name, argv, ready)
        return Proxy(url, ca_file, None, process)

    def mirror(self, name: str, *, remote_url: str, env: dict[str, str]) -> tuple[str, ManagedProcess, Path]:
        """A fresh pull-through mirror (empty storage) in front of remote_url."""
        port = free_port()
        folder = self.mirrors_root / name
        shutil.rmtree(folder, ignore_errors=True)
        storage = folder / "storage"
        storage.mkdir(parents=True)
        path = write_config(mirror_config(storage, port, remote_url), folder / "config.yml")
        url = f"http://127.0.0.1:{port}"
        process = self.start(f"mirror-{name}", [self.registry, "serve", str(path)],
                             lambda: requests.get(f"{url}/v2/", timeout=1.0).ok, env)
        return url, process, folder


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
