"""The embedded lab: a stand-in Docker Hub, the fault proxy and a real
pull-through mirror, all on loopback, started and stopped as one.

    client --> mirror (distribution, proxy mode) --HTTPS_PROXY--> fault proxy --> lab hub
       \\_____________ fallback to registry-1.docker.io _________/  (registry + auth service
                                                                   + blob CDN)

Blob GETs answer 307 to production.cloudflare.docker.com, as Hub's do; the
proxy routes that host to the CDN service, which serves the hub's storage.

Start order follows the dependencies: the hub, its auth service and its CDN,
then the proxy (whose CA the mirror must trust), then the mirror. Any failure stops
whatever already started, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Collection
from pathlib import Path

import requests

from chaos.clients.engines import ENGINES
from chaos.clients.skopeo_engine import HINT as SKOPEO_HINT
from chaos.errors import EnvironmentProblem, UsageError
from chaos.lab.accounts import Accounts, Repo
from chaos.lab.dockerd import LabDockerd
from chaos.lab.dockerd import can_run as dockerd_can_run
from chaos.lab.layout import LabPaths, LabState
from chaos.lab.ports import free_ports
from chaos.lab.process import ManagedProcess, require_binary
from chaos.lab.registry_config import hub_config, mirror_config, push_config, write_config
from chaos.lab.seed import Seeder
from chaos.lab.tokens import TokenSigner
from chaos.proxy.control_client import ControlClient
from chaos.scenario.model import LabSpec, SeedImage
from chaos.vocab.hub import REGISTRY_URL

READY_DEADLINE_S = 30.0
_REGISTRY_BINARY_HINT = "install the Debian package docker-registry (apt-get install docker-registry)"
_ADDON = Path(__file__).resolve().parents[2] / "addons" / "hub_chaos.py"


def _http_answers(url: str) -> bool:
    # Any HTTP answer proves the server is up (the hub answers /v2/ with 401).
    requests.get(url, timeout=1.0)
    return True


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: the user's proxy settings must never leak into the lab."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
    keep.update(extra or {})
    return keep


# How the lab runs mitmdump besides its addon options (bench/ measures the same).
PROXY_TUNING = (
    # Lazy: the addon re-routes Hub's host names before anything resolves them.
    "--set", "connection_strategy=lazy",
    # Blobs stream through instead of being buffered whole.
    "--set", "stream_large_bodies=256k",
    # HTTP/1.1 to both sides: with HTTP/2 mitmproxy spends ~60% more CPU
    # per byte (16 KB frames, h2's per-frame repr); docs/benchmarks.md.
    # Faults then meet HTTP/1.1 clients: `reset` is a TCP RST, never an h2 stream reset.
    "--set", "http2=false",
)  # fmt: skip


class Lab:
    def __init__(
        self,
        spec: LabSpec,
        root: Path,
        *,
        progress: Callable[[str], None] | None = None,
        detached: bool = False,
        engines: Collection[str] = (),
    ):
        """engines: the real pull engines this lab must serve besides builtin.
        "docker" starts a private dockerd behind the mirror (its socket lands
        in state.docker_host); "skopeo" needs no process, only its binary,
        checked at start."""
        unknown = sorted(set(engines) - set(ENGINES))
        if unknown:
            raise UsageError(f"unknown engine {unknown[0]!r} (expected one of: {', '.join(ENGINES)})")
        self.engines = frozenset(engines)
        self.dockerd: LabDockerd | None = None
        self.spec = spec
        self.paths = LabPaths(root)
        self.progress = progress or (lambda message: None)
        self.detached = detached  # `chaos lab up`: children outlive this process
        self.components: dict[str, ManagedProcess] = {}
        self.state = LabState(root=str(root))
        components = ("hub", "auth", "cdn", "proxy", "control", "mirror", "push-registry")
        self._ports = dict(zip(components, free_ports(len(components))))
        self.signer: TokenSigner | None = None
        self.accounts: Accounts | None = None
        # How each component was launched, so `restart` starts it exactly the same way.
        self._launch_specs: dict[str, tuple[list[str], Callable[[], bool], dict[str, str] | None]] = {}

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> LabState:
        registry = require_binary("docker-registry", _REGISTRY_BINARY_HINT)
        # Engines first: a missing one must not cost a lab start and stop.
        if "skopeo" in self.engines:
            require_binary("skopeo", SKOPEO_HINT)
        if "docker" in self.engines:
            dockerd_can_run()
        mitmdump = require_binary(_mitmdump_path(), "install hub-chaos's Python dependencies (pip install -e .)")
        for folder in (self.paths.logs, self.paths.hub_storage, self.paths.mirror_storage, self.paths.proxy_confdir):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start_hub(registry)
            self._start_cdn()
            self._start_proxy(mitmdump)
            self._start_mirror(registry)
            if self.spec.push_registry:
                self._start_push_registry(registry)
            if "docker" in self.engines:
                self._start_dockerd()
            self._save_state()
            self._seed()
        except BaseException:
            self.stop()
            raise
        self.progress(f"lab ready: mirror {self.state.mirror_url}, fault proxy {self.state.proxy_url}")
        return self.state

    def stop(self) -> None:
        if self.dockerd is not None:
            # First: it pulls through the mirror and the proxy. Its own stop also
            # removes its containerd, mounts and sockets.
            self.dockerd.stop()
            self.dockerd = None
        for name in reversed(list(self.components)):
            self.components[name].stop()
        self.components.clear()
        if self.paths.state_file.exists():
            self.paths.state_file.unlink()

    # -- components --------------------------------------------------------

    def _launch(self, name: str, argv: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None) -> None:
        self._launch_specs[name] = (argv, ready, env)
        process = ManagedProcess(name, argv, self.paths.log(name), env=_child_env(env), tie_to_parent=not self.detached)
        self.components[name] = process
        process.start()
        self.state.process_groups[name] = process.pid
        self._save_state()  # so `lab down` and the tests can find even a half-started lab
        process.wait_ready(ready, READY_DEADLINE_S)

    def _start_hub(self, registry: str) -> None:
        self.progress("starting lab hub (registry + auth.docker.io emulation)")
        keys = self.paths.hub / "keys"
        self.signer = TokenSigner.create(keys)
        self.accounts = Accounts(
            users={u.name: u.password for u in self.spec.users},
            repositories={
                image.ref.repository: Repo(private=image.private, readers=tuple(image.readers))
                for image in self.spec.images
            },
        )
        self.state.users = dict(self.accounts.users)
        accounts_file = self.paths.hub / "accounts.json"
        self.accounts.to_file(accounts_file)

        hub_port, auth_port = self._ports["hub"], self._ports["auth"]
        self.state.ports.update(hub=hub_port, auth=auth_port)
        config = self.paths.hub / "config.yml"
        write_config(hub_config(self.paths.hub_storage, hub_port, self.signer.cert_path), config)
        self.state.hub_url = f"http://127.0.0.1:{hub_port}"
        self.state.auth_url = f"http://127.0.0.1:{auth_port}"
        self._launch("hub", [registry, "serve", str(config)], lambda: _http_answers(f"{self.state.hub_url}/v2/"))
        self._launch(
            "auth",
            [sys.executable, "-m", "chaos.lab.auth_service", "--accounts", str(accounts_file),
             "--keys", str(keys), "--host", "127.0.0.1", "--port", str(auth_port)],
            lambda: requests.get(f"{self.state.auth_url}/healthz", timeout=1.0).ok,
        )

    def _start_cdn(self) -> None:
        self.progress("starting blob CDN (production.cloudflare.docker.com emulation)")
        port = self._ports["cdn"]
        self.state.ports["cdn"] = port
        self.state.cdn_url = f"http://127.0.0.1:{port}"
        secret_file = self.paths.cdn_secret_file
        # Written before either reader starts; a fresh secret per lab so no URL outlives it.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        self._launch(
            "cdn",
            [sys.executable, "-m", "chaos.lab.cdn_service", "--storage", str(self.paths.hub_storage),
             "--secret-file", str(secret_file), "--host", "127.0.0.1", "--port", str(port)],
            lambda: requests.get(f"{self.state.cdn_url}/healthz", timeout=1.0).ok,
        )

    def _start_proxy(self, mitmdump: str) -> None:
        self.progress("starting fault proxy (mitmdump + hub_chaos addon)")
        proxy_port, control_port = self._ports["proxy"], self._ports["control"]
        self.state.ports.update(proxy=proxy_port, control=control_port)
        self.state.proxy_url = f"http://127.0.0.1:{proxy_port}"
        self.state.control_url = f"http://127.0.0.1:{control_port}"
        self.state.ca_file = str(self.paths.ca_file)
        argv = [
            mitmdump, "--quiet",
            "--listen-host", "127.0.0.1", "--listen-port", str(proxy_port),
            "--set", f"confdir={self.paths.proxy_confdir}",
            *PROXY_TUNING,
            "-s", str(_ADDON),
            "--set", f"hub_routes=registry={self.state.hub_url},auth={self.state.auth_url},cdn={self.state.cdn_url}",
            # Blob GETs answer 307 to the CDN host, as Hub's do, with URLs the CDN can check.
            "--set", f"hub_cdn_secret_file={self.paths.cdn_secret_file}",
            "--set", f"hub_control=127.0.0.1:{control_port}",
        ]
        control = ControlClient(self.state.control_url, timeout=1.0)
        self._launch("proxy", argv, lambda: control.health() and self.paths.ca_file.exists())

    def _start_mirror(self, registry: str) -> None:
        self.progress("starting mirror under test (distribution, proxy mode)")
        port = self._ports["mirror"]
        self.state.ports["mirror"] = port
        self.state.mirror_url = f"http://127.0.0.1:{port}"
        self.state.mirror_storage = str(self.paths.mirror_storage)
        config = self.paths.mirror / "config.yml"
        write_config(mirror_config(self.paths.mirror_storage, port, REGISTRY_URL), config)
        env = {"HTTPS_PROXY": self.state.proxy_url, "SSL_CERT_FILE": str(self.paths.ca_file)}
        self._launch("mirror", [registry, "serve", str(config)], lambda: requests.get(f"{self.state.mirror_url}/v2/", timeout=1.0).ok, env)

    def _start_push_registry(self, registry: str) -> None:
        self.progress("starting push registry (shares the mirror's storage)")
        port = self._ports["push-registry"]
        self.state.ports["push-registry"] = port
        self.state.push_registry_url = f"http://127.0.0.1:{port}"
        config = self.paths.root / "push-registry.yml"
        write_config(push_config(self.paths.mirror_storage, port), config)
        self._launch("push-registry", [registry, "serve", str(config)],
                     lambda: requests.get(f"{self.state.push_registry_url}/v2/", timeout=1.0).ok)

    def _start_dockerd(self) -> None:
        self.dockerd = LabDockerd(
            self.paths,
            mirror_url=self.state.mirror_url,
            proxy_url=self.state.proxy_url,
            ca_file=self.state.ca_file,
            env=_child_env(),
            detached=self.detached,
            progress=self.progress,
        )
        # A failed start cleans up after itself (LabDockerd.start) and raises here.
        self.state.docker_host = self.dockerd.start()
        # For `chaos lab down`, which has only lab.json to go by.
        self.state.docker_exec_root = str(self.dockerd.exec_root)
        self.state.process_groups["dockerd"] = self.dockerd.pid
        self._save_state()

    def _seed(self) -> None:
        Seeder(self.state.hub_url, self.signer, seed=self.spec.seed, progress=self.progress).seed_all(self.spec.images)

    # -- changes during a run -------------------------------------------------

    def restart(self, component: str) -> None:
        """Stop a component and start it again on the same port with the same
        configuration; raises ComponentFailed (with its log) if it will not come back."""
        if component not in self._launch_specs:
            raise UsageError(f"restart {component}: this lab has no {component} (it runs: {', '.join(self._launch_specs)})")
        self.progress(f"restarting {component}")
        self.components[component].stop()
        argv, ready, env = self._launch_specs[component]
        self._launch(component, argv, ready, env)

    def publish(self, image: SeedImage, content_seed: str) -> str:
        """Push new content to the hub (a new image, or a tag moved to new
        content, as a vendor publishing `latest` does); returns its digest."""
        repositories = dict(self.accounts.repositories)
        repositories[image.ref.repository] = Repo(private=image.private, readers=tuple(image.readers))
        self.accounts = Accounts(users=dict(self.accounts.users), repositories=repositories)
        self.accounts.to_file(self.paths.hub / "accounts.json")  # the auth service reloads it
        seeder = Seeder(self.state.hub_url, self.signer, seed=content_seed, progress=self.progress)
        return seeder.publish(image)

    def _save_state(self) -> None:
        self.state.save(self.paths.state_file)

    def seeder(self) -> Seeder:
        return Seeder(self.state.hub_url, self.signer, seed=self.spec.seed, progress=self.progress)


def _mitmdump_path() -> str:
    # The addon imports chaos, so mitmdump must run from the same environment.
    candidate = Path(sys.executable).with_name("mitmdump")
    if candidate.exists():
        return str(candidate)
    raise EnvironmentProblem(f"mitmdump not found next to {sys.executable}: install hub-chaos with pip (it depends on mitmproxy)")
