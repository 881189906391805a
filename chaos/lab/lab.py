"""The embedded lab: a stand-in Docker Hub, the fault proxy and a real
pull-through mirror, all on loopback, started and stopped as one.

    client --> mirror (distribution, proxy mode) --HTTPS_PROXY--> fault proxy --> lab hub
       \\_____________ fallback to registry-1.docker.io _________/  (registry + auth service
                                                                   + blob CDN)

Blob GETs answer 307 to production.cloudflare.docker.com, as Hub's do; the
proxy routes that host to the CDN service, which serves the hub's storage.

Start order follows the dependencies: the hub, its auth service and its CDN,
then the proxy (whose CA the mirror must trust), then the mirror. Any failure stops
whatever already started, so a failed start leaves nothing behind. Each
component's command line comes from its launcher in chaos.lab.components (the
benchmarks start the same ones); the Lab only composes them.

    with Lab(spec, root) as lab:      # started; lab.state says where everything is
        ...
        lab.leave_running()           # `chaos lab up`, `--keep-lab`: a normal exit keeps it

Any exception out of the with-block (KeyboardInterrupt included) stops the
lab, left running or not; `lab.stopped` tells afterwards. Progress goes to
the "chaos.lab" loggers at INFO.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Self

from chaos.errors import UsageError
from chaos.lab.accounts import Accounts, Repo
from chaos.lab.binaries import require_docker_registry, require_skopeo
from chaos.lab.components.auth import auth_service
from chaos.lab.components.cdn import blob_cdn, write_secret
from chaos.lab.components.hub import hub_registry
from chaos.lab.components.launch import READY_DEADLINE_S, Launch, loopback_url
from chaos.lab.components.mirror import pull_through_mirror
from chaos.lab.components.proxy import fault_proxy, mitmdump_binary
from chaos.lab.components.push_registry import push_registry
from chaos.lab.dockerd import LabDockerd
from chaos.lab.dockerd import can_run as dockerd_can_run
from chaos.lab.layout import LabPaths, LabState
from chaos.lab.ports import free_ports
from chaos.lab.process import ManagedProcess
from chaos.lab.seed import Seeder
from chaos.lab.tokens import TokenSigner
from chaos.language.model import LabSpec, SeedImage
from chaos.vocab.hub import REGISTRY_URL
from chaos.vocab.names import ENGINES

log = logging.getLogger(__name__)
_PORTS = ("hub", "auth", "cdn", "proxy", "control", "mirror", "push-registry")


class Lab:
    def __init__(self, spec: LabSpec, root: Path, *, detached: bool = False, engines: Collection[str] = ()):
        """detached: the components outlive this process (`chaos lab up`,
        `chaos run --keep-lab`); otherwise they get SIGTERM when it dies.
        engines: the real pull engines this lab must serve besides builtin.
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
        self.detached = detached
        self.components: dict[str, ManagedProcess] = {}
        self.state = LabState(root=str(root))
        self._ports = dict(zip(_PORTS, free_ports(len(_PORTS))))
        self.signer: TokenSigner | None = None
        self.accounts: Accounts | None = None
        # How each component was launched, so `restart` starts it exactly the same way.
        self._launches: dict[str, Launch] = {}
        self._left_running = False
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None and self._left_running:
            return
        self.stop()

    @property
    def stopped(self) -> bool:
        """Whether stop() has run since the last start: nothing of this lab is left running."""
        return self._stopped

    def leave_running(self) -> None:
        """Let a normal exit of the with-block leave the lab running (stop it
        later with stop(), or `chaos lab down` from its lab.json); an exception
        still stops it. Only a detached lab outlives this process."""
        self._left_running = True

    def start(self) -> LabState:
        self._stopped = False
        registry = require_docker_registry()
        # Engines first: a missing one must not cost a lab start and stop.
        if "skopeo" in self.engines:
            require_skopeo()
        if "docker" in self.engines:
            dockerd_can_run()
        mitmdump = mitmdump_binary()
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
        log.info("lab ready: mirror %s, fault proxy %s", self.state.mirror_url, self.state.proxy_url)
        return self.state

    def stop(self) -> None:
        """Stop every component, last started first; safe to call twice."""
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
        self._stopped = True

    # -- components --------------------------------------------------------

    def _launch(self, launch: Launch) -> None:
        self._launches[launch.name] = launch
        process = launch.process(tie_to_parent=not self.detached)
        self.components[launch.name] = process
        process.start()
        self.state.process_groups[launch.name] = process.pid
        self._save_state()  # so `lab down` and the tests can find even a half-started lab
        process.wait_ready(launch.ready, READY_DEADLINE_S)

    def _start_hub(self, registry: str) -> None:
        log.info("starting lab hub (registry + auth.docker.io emulation)")
        self.signer = TokenSigner.create(self.paths.hub_keys)
        self.accounts = Accounts(
            users={u.name: u.password for u in self.spec.users},
            repositories={
                image.ref.repository: Repo(private=image.private, readers=tuple(image.readers))
                for image in self.spec.images
            },
        )
        self.state.users = dict(self.accounts.users)
        self.accounts.to_file(self.paths.accounts_file)

        hub_port, auth_port = self._ports["hub"], self._ports["auth"]
        self.state.ports.update(hub=hub_port, auth=auth_port)
        hub = hub_registry(
            binary=registry, port=hub_port, storage=self.paths.hub_storage, cert_path=self.signer.cert_path,
            config_path=self.paths.hub_config, log_path=self.paths.log("hub"),
        )
        auth = auth_service(
            port=auth_port, accounts_file=self.paths.accounts_file, keys=self.paths.hub_keys,
            log_path=self.paths.log("auth"),
        )
        self.state.hub_url, self.state.auth_url = hub.url, auth.url
        self._launch(hub)
        self._launch(auth)

    def _start_cdn(self) -> None:
        log.info("starting blob CDN (production.cloudflare.docker.com emulation)")
        port = self._ports["cdn"]
        self.state.ports["cdn"] = port
        write_secret(self.paths.cdn_secret_file)
        cdn = blob_cdn(
            port=port, storage=self.paths.hub_storage, secret_file=self.paths.cdn_secret_file,
            log_path=self.paths.log("cdn"),
        )
        self.state.cdn_url = cdn.url
        self._launch(cdn)

    def _start_proxy(self, mitmdump: str) -> None:
        log.info("starting fault proxy (mitmdump + hub_chaos addon)")
        proxy_port, control_port = self._ports["proxy"], self._ports["control"]
        self.state.ports.update(proxy=proxy_port, control=control_port)
        proxy = fault_proxy(
            mitmdump=mitmdump, port=proxy_port, control_port=control_port, confdir=self.paths.proxy_confdir,
            routes={"registry": self.state.hub_url, "auth": self.state.auth_url, "cdn": self.state.cdn_url},
            cdn_secret_file=self.paths.cdn_secret_file, log_path=self.paths.log("proxy"),
        )
        self.state.proxy_url = proxy.url
        self.state.control_url = loopback_url(control_port)
        self.state.ca_file = str(self.paths.ca_file)
        self._launch(proxy)

    def _start_mirror(self, registry: str) -> None:
        log.info("starting mirror under test (distribution, proxy mode)")
        port = self._ports["mirror"]
        self.state.ports["mirror"] = port
        self.state.mirror_storage = str(self.paths.mirror_storage)
        mirror = pull_through_mirror(
            binary=registry, port=port, storage=self.paths.mirror_storage, config_path=self.paths.mirror_config,
            log_path=self.paths.log("mirror"), remote_url=REGISTRY_URL,
            https_proxy=self.state.proxy_url, ca_file=self.paths.ca_file,
        )
        self.state.mirror_url = mirror.url
        self._launch(mirror)

    def _start_push_registry(self, registry: str) -> None:
        log.info("starting push registry (shares the mirror's storage)")
        port = self._ports["push-registry"]
        self.state.ports["push-registry"] = port
        push = push_registry(
            binary=registry, port=port, storage=self.paths.mirror_storage,
            config_path=self.paths.push_registry_config, log_path=self.paths.log("push-registry"),
        )
        self.state.push_registry_url = push.url
        self._launch(push)

    def _start_dockerd(self) -> None:
        self.dockerd = LabDockerd(
            self.paths,
            mirror_url=self.state.mirror_url,
            proxy_url=self.state.proxy_url,
            ca_file=self.state.ca_file,
            detached=self.detached,
        )
        # A failed start cleans up after itself (LabDockerd.start) and raises here.
        self.state.docker_host = self.dockerd.start()
        # For `chaos lab down`, which has only lab.json to go by.
        self.state.docker_exec_root = str(self.dockerd.exec_root)
        self.state.process_groups["dockerd"] = self.dockerd.pid
        self._save_state()

    def _seed(self) -> None:
        Seeder(self.state.hub_url, self.signer, seed=self.spec.seed).seed_all(self.spec.images)

    # -- changes during a run -------------------------------------------------

    def restart(self, component: str) -> None:
        """Stop a component and start it again on the same port with the same
        configuration; raises ComponentFailed (with its log) if it will not come back."""
        if component not in self._launches:
            raise UsageError(f"restart {component}: this lab has no {component} (it runs: {', '.join(self._launches)})")
        log.info("restarting %s", component)
        self.components[component].stop()
        self._launch(self._launches[component])

    def publish(self, image: SeedImage, content_seed: str) -> str:
        """Push new content to the hub (a new image, or a tag moved to new
        content, as a vendor publishing `latest` does); returns its digest."""
        repositories = dict(self.accounts.repositories)
        repositories[image.ref.repository] = Repo(private=image.private, readers=tuple(image.readers))
        self.accounts = Accounts(users=dict(self.accounts.users), repositories=repositories)
        self.accounts.to_file(self.paths.accounts_file)  # the auth service reloads it
        return Seeder(self.state.hub_url, self.signer, seed=content_seed).publish(image)

    def _save_state(self) -> None:
        self.state.save(self.paths.state_file)
