"""The embedded lab: a stand-in Docker Hub, the fault proxy and a real
pull-through mirror, all on loopback, started and stopped as one.

    client --> mirror (distribution, proxy mode) --HTTPS_PROXY--> fault proxy --> lab hub
       \\_____________ fallback to registry-1.docker.io _________/  (registry + auth service
                                                                   + blob CDN)

Blob GETs answer 307 to production.cloudflare.docker.com, as Hub's do; the
proxy routes that host to the CDN service, which serves the hub's storage
over TLS with a certificate from the proxy's own CA (which the clients trust
anyway), so the proxy relays CDN tunnels unopened while no fault could match
them (chaos.proxy.passthrough) and decrypts them only when one could.
The fault proxy listens once per origin (the mirror, the client engines, the
push registry), so every upstream request it records says who asked.

Start order follows the dependencies: the hub, its auth service and its CDN,
then the proxy (whose CA the mirror must trust), then the mirror. Any failure stops
whatever already started, so a failed start leaves nothing behind. Each
component's command line comes from its launcher in chaos.lab.components (the
benchmarks start the same ones); the Lab only composes them.

    with Lab(spec, root) as lab:      # started; lab.state says where everything is
        ...
        lab.leave_running()           # `chaos lab up`, `--keep-lab`: a normal exit keeps it

Any exception out of the with-block (KeyboardInterrupt included) stops the
lab, left running or not; `lab.stopped` tells afterwards whether the stop
completed. A Ctrl-C or SIGTERM during the stop is held until the teardown is
done. Progress goes to the "chaos.lab" loggers at INFO.

What it writes: lab.json (no secret: chaos.lab.layout) and the logs and
configuration files in the lab folder; the bulk (the hub's and mirror's
storage, the daemons' roots) in a scratch folder removed at stop, after a
listing of the mirror's storage is written. A lab killed before it could
stop is cleaned up by the next start in the same folder, or by
stop_recorded() (chaos.lab.records, re-exported here).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from chaos.errors import PortInUse, UsageError
from chaos.lab import containerd as lab_containerd
from chaos.lab.accounts import Accounts, Repo
from chaos.lab.binaries import require_registry, require_skopeo
from chaos.lab.components.auth import auth_service
from chaos.lab.components.cdn import blob_cdn, write_secret
from chaos.lab.components.hub import hub_registry
from chaos.lab.components.launch import LOOPBACK, READY_DEADLINE_S, Launch, loopback_url
from chaos.lab.components.mirror import pull_through_mirror
from chaos.lab.components.proxy import fault_proxy, mitmdump_binary
from chaos.lab.components.push_registry import push_registry
from chaos.lab.containerd import LabContainerd
from chaos.lab.dockerd import LabDockerd
from chaos.lab.dockerd import can_run as dockerd_can_run
from chaos.lab.external import ExternalMirrorSettings, external_mirror_settings
from chaos.lab.layout import LabPaths, LabState, choose_scratch, make_scratch, save_users
from chaos.lab.ports import free_ports
from chaos.lab.process import ManagedProcess, boot_id, telling_line
from chaos.lab.records import (
    RecordedComponent,
    RecordedLab,
    StopReport,
    claim_folder,
    recorded_lab,
    remove_leftovers,
    running_lab_state,
    stop_recorded,
)
from chaos.lab.registry_config import load_user_config, mirror_config_from, upstream_login_problem
from chaos.lab.seed import Seeder
from chaos.lab.tokens import TokenSigner
from chaos.language.model import LabSpec, SeedImage
from chaos.proxy.upstream_tls import issue_server_cert
from chaos.vocab.hub import CDN_HOST, REGISTRY_URL
from chaos.vocab.names import ENGINES

__all__ = [
    "ExternalMirrorSettings", "Lab", "RecordedComponent", "RecordedLab", "StopReport",
    "external_mirror_settings", "recorded_lab", "running_lab_state", "stop_recorded",
]  # fmt: skip

log = logging.getLogger(__name__)
_PORTS = (
    "hub", "auth", "cdn", "proxy", "proxy-mirror", "proxy-push-registry", "control", "mirror", "push-registry",
)  # fmt: skip
# Starts of the whole lab when another program takes a port it chose (chaos.lab.ports).
_START_ATTEMPTS = 3
# The fault proxy's listener of each origin (chaos.vocab.names.ORIGINS), by its key in _PORTS.
_LISTENERS = {"mirror": "proxy-mirror", "client": "proxy", "push-registry": "proxy-push-registry"}


class Lab:
    def __init__(
        self,
        spec: LabSpec,
        root: Path,
        *,
        detached: bool = False,
        engines: Collection[str] = (),
        mirror: bool = True,
        registry_binary: str | None = None,
    ):
        """detached: the components outlive this process (`chaos lab up`,
        `chaos run --keep-lab`); otherwise they get SIGTERM when it dies.
        engines: the real pull engines this lab must serve besides builtin.
        "docker" starts a private dockerd behind the mirror (its socket lands
        in state.docker_host), "containerd" a private containerd
        (state.containerd_address); "skopeo" needs no process, only its
        binary, checked at start.
        mirror: False starts the hub and the fault proxy only, for a mirror of
        the user's own (external_mirror_settings() says how to point it here).
        registry_binary: the distribution registry to run (default:
        $CHAOS_REGISTRY_BINARY, docker-registry, registry)."""
        unknown = sorted(set(engines) - set(ENGINES))
        if unknown:
            raise UsageError(f"unknown engine {unknown[0]!r} (expected one of: {', '.join(ENGINES)})")
        if not mirror:
            daemons = sorted(set(engines) & {"docker", "containerd"})
            if daemons:
                raise UsageError(f"engine {daemons[0]}: the lab's {daemons[0]} pulls through the lab's mirror, "
                                 "and this lab runs none (mirror=False)")
            if spec.mirror.upstream_login or spec.mirror.ttl_s is not None or spec.mirror.config_file:
                raise UsageError("lab.mirror: settings for the lab's mirror, and this lab runs none (mirror=False)")
        users = {user.name for user in spec.users}
        login = spec.mirror.upstream_login
        if login is not None and login not in users:
            raise UsageError(f"lab.mirror.upstream_login: {login!r} is not a lab user "
                             f"(lab.users: {', '.join(sorted(users)) or 'none'})")
        self.engines = frozenset(engines)
        self.with_mirror = mirror
        self.registry_binary = registry_binary
        self.dockerd: LabDockerd | None = None
        self.containerd: LabContainerd | None = None
        self.spec = spec
        self.paths = LabPaths(Path(root))
        self.detached = detached
        self.components: dict[str, ManagedProcess] = {}
        self.state = LabState(root=str(root))
        self._ports = dict(zip(_PORTS, free_ports(len(_PORTS))))
        self.signer: TokenSigner | None = None
        self.accounts: Accounts | None = None
        # How each component was launched, so `restart` starts it exactly the same way.
        self._launches: dict[str, Launch] = {}
        self._starting: list[str] = []  # started with wait=False, not yet seen ready
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
        # An exception on its way out (a first Ctrl-C...) says it all: a signal
        # held during the stop is not raised again.
        self._stop(raise_held_signal=exc_type is None)

    @property
    def stopped(self) -> bool:
        """Whether a stop has completed since the last start: every process of
        this lab is gone and its leftovers removed. False after a stop that
        could not finish (a process that would not die, a folder still mounted)."""
        return self._stopped

    def leave_running(self) -> None:
        """Let a normal exit of the with-block leave the lab running (stop it
        later with stop(), or `chaos lab down` from its lab.json); an exception
        still stops it. Only a detached lab outlives this process."""
        self._left_running = True

    def external_mirror_settings(self) -> ExternalMirrorSettings:
        """How to point a mirror of the user's own at this lab (see chaos.lab.external)."""
        return external_mirror_settings(self.state)

    def start(self) -> LabState:
        registry = require_registry(self.registry_binary)
        # Engines and input first: a missing binary or a bad file must not cost a lab start and stop.
        if "skopeo" in self.engines:
            require_skopeo()
        if "docker" in self.engines:
            dockerd_can_run()
        if "containerd" in self.engines:
            lab_containerd.can_run()
        mirror_base = load_user_config(self.spec.mirror.config_file) if self.spec.mirror.config_file else None
        if mirror_base is not None and not self.spec.mirror.upstream_login:
            problem = upstream_login_problem(mirror_base, {user.name: user.password for user in self.spec.users})
            if problem:
                log.warning("mirror config %s: %s", self.spec.mirror.config_file, problem)
        mitmdump = mitmdump_binary()
        claim_folder(self.paths.root)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(_START_ATTEMPTS), reraise=True, before_sleep=self._choose_other_ports,
                # Only over a clean slate: a stop that left something behind is no place to start again.
                retry=retry_if_exception(lambda exc: isinstance(exc, PortInUse) and self._stopped),
            ):
                with attempt:
                    self._start_components(registry, mitmdump, mirror_base)
        except PortInUse as taken:
            if not self._stopped:
                raise
            raise PortInUse(f"{_START_ATTEMPTS} starts of the lab each found a port it had chosen taken by another "
                            f"program; the last: {taken}", taken.component, taken.port) from None
        if self.with_mirror:
            log.info("lab ready: mirror %s, fault proxy %s", self.state.mirror_url, self.state.proxy_url)
        else:
            log.info("lab ready without a mirror: hub behind fault proxy %s (a mirror's listener: %s)",
                     self.state.proxy_url, self.state.proxy_urls["mirror"])
        return self.state

    def _choose_other_ports(self, retry: RetryCallState) -> None:
        taken = retry.outcome.exception() if retry.outcome else None
        log.info("another program took port %s of the %s as it started; starting the lab again on other ports "
                 "(attempt %d of %d)", getattr(taken, "port", "?"), getattr(taken, "component", "lab"),
                 retry.attempt_number + 1, _START_ATTEMPTS)
        self._ports = dict(zip(_PORTS, free_ports(len(_PORTS))))

    def _start_components(self, registry: str, mitmdump: str, mirror_base: dict | None) -> None:
        """One attempt at starting every component; a failure stops what started."""
        self._stopped = False
        self._starting = []
        self._launches = {}
        # Recorded before it exists: a kill right after it appears leaves it findable.
        self.paths = LabPaths(self.paths.root, choose_scratch())
        self.state = LabState(root=str(self.paths.root), scratch=str(self.paths.scratch), boot_id=boot_id())
        try:
            self._save_state()
            make_scratch(self.paths.scratch, self.paths.root)
            for folder in (self.paths.logs, self.paths.hub_storage, self.paths.proxy_confdir):
                folder.mkdir(parents=True, exist_ok=True)
            # Hub, auth, CDN and proxy need nothing of each other to start (the
            # proxy's routes are addresses chosen before, the CDN's certificate
            # is made before mitmdump starts), so they start side by side, and
            # the images go to the hub itself while mitmdump imports (~0.7 s):
            # the lab is ready in about the time of the slowest.
            self._start_hub(registry)
            self._start_cdn()
            self._start_proxy(mitmdump)
            self._await_started("hub")
            self._seed()
            self._await_started()
            if self.with_mirror:
                # A mirror may ask Hub something as it starts: the proxy is ready by now.
                self._start_mirror(registry, mirror_base)
                if self.spec.push_registry:
                    self._start_push_registry(registry)
                self._await_started()
            if "docker" in self.engines:
                self._start_dockerd()
            if "containerd" in self.engines:
                self._start_containerd()
            self.state.status = "running"
            self._save_state()
        except PortInUse:
            # Started again by start(); so a Ctrl-C held during this stop is raised instead.
            self._stop(raise_held_signal=True)
            raise
        except BaseException:
            self._stop(raise_held_signal=False)
            raise

    def stop(self) -> None:
        """Stop every component, last started first, and remove the leftovers;
        safe to call twice. A Ctrl-C or SIGTERM meanwhile is held until the
        teardown is done, then raised (KeyboardInterrupt)."""
        self._stop(raise_held_signal=True)

    def _stop(self, *, raise_held_signal: bool) -> None:
        with _signals_held() as held:
            self._stopped = self._teardown()
        if held and raise_held_signal:
            raise KeyboardInterrupt

    def _teardown(self) -> bool:
        """True when everything is gone."""
        complete = True
        started = self.paths.scratch is not None
        if started and self.paths.state_file.exists():
            self.state.status = "stopping"
            self._save_state()
        if self.containerd is not None:
            complete &= self.containerd.stop()
            self.containerd = None
        if self.dockerd is not None:
            # Before the mirror and the proxy it pulls through. Its own stop also
            # removes its containerd, mounts and sockets.
            complete &= self.dockerd.stop()
            self.dockerd = None
        for name in reversed(list(self.components)):
            complete &= self.components[name].stop()
        self.components.clear()
        if started:
            _, left = remove_leftovers(self.paths, self.state)
            complete &= not left
            self.state.status = "stopped" if complete else "stopping"
            self._save_state()
        return complete

    # -- components --------------------------------------------------------

    def _launch(self, launch: Launch, *, wait: bool = True) -> None:
        """Start a component (on this thread: its death signal is tied to the
        thread that starts it) and wait until it is ready, or (wait=False)
        leave that to _await_started, so components start side by side."""
        self._launches[launch.name] = launch
        process = launch.process(tie_to_parent=not self.detached)
        self.components[launch.name] = process
        process.start()
        self._record(launch.name, process)
        if wait:
            process.wait_ready(launch.ready, READY_DEADLINE_S)
        else:
            self._starting.append(launch.name)

    def _await_started(self, *names: str) -> None:
        """Wait for the named components started with wait=False (all of them
        when none is named) to be ready."""
        for name in [n for n in self._starting if not names or n in names]:
            self._starting.remove(name)
            self.components[name].wait_ready(self._launches[name].ready, READY_DEADLINE_S)

    def _record(self, name: str, process: ManagedProcess) -> None:
        # Before waiting for it: `lab down` and the next start must find even a half-started lab.
        self.state.process_groups[name] = process.pid
        self.state.processes[name] = process.identity.to_dict()
        self._save_state()

    def _start_hub(self, registry: str) -> None:
        log.info("starting lab hub (registry + auth.docker.io emulation)")
        self.signer = TokenSigner.create(self.paths.hub_keys)
        self.state.users = {user.name: user.password for user in self.spec.users}
        # The accounts file keeps hashes, not passwords; users.json keeps the
        # passwords `chaos pull --login` needs (0600), all but the mirror's own
        # upstream login, whose password lives in the mirror's config alone.
        self.accounts = Accounts(
            users=dict(self.state.users),
            repositories={
                image.ref.repository: Repo(private=image.private, readers=tuple(image.readers))
                for image in self.spec.images
            },
        ).hashed()
        self.accounts.to_file(self.paths.accounts_file)
        save_users(self.paths.users_file, {
            name: password for name, password in self.state.users.items() if name != self.spec.mirror.upstream_login
        })

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
        self._launch(hub, wait=False)
        self._launch(auth, wait=False)

    def _start_cdn(self) -> None:
        log.info("starting blob CDN (production.cloudflare.docker.com emulation)")
        port = self._ports["cdn"]
        self.state.ports["cdn"] = port
        write_secret(self.paths.cdn_secret_file)
        self.state.cdn_secret_file = str(self.paths.cdn_secret_file)
        # Issued by the proxy's CA, made here in its confdir (mitmdump, started
        # next, finds and uses it): every client of the lab trusts that CA already.
        tls = issue_server_cert(self.paths.proxy_confdir, self.paths.cdn_tls, (CDN_HOST, LOOPBACK), name="cdn")
        cdn = blob_cdn(
            port=port, storage=self.paths.hub_storage, secret_file=self.paths.cdn_secret_file,
            log_path=self.paths.log("cdn"), tls=tls,
        )
        self.state.cdn_url = cdn.url
        self._launch(cdn, wait=False)

    def _start_proxy(self, mitmdump: str) -> None:
        log.info("starting fault proxy (mitmdump + hub_chaos addon, one listener per origin)")
        origins = {origin: self._ports[key] for origin, key in _LISTENERS.items()}
        control_port = self._ports["control"]
        self.state.ports.update({key: self._ports[key] for key in _LISTENERS.values()}, control=control_port)
        proxy = fault_proxy(
            mitmdump=mitmdump, port=origins["client"], control_port=control_port, confdir=self.paths.proxy_confdir,
            routes={"registry": self.state.hub_url, "auth": self.state.auth_url, "cdn": self.state.cdn_url},
            cdn_secret_file=self.paths.cdn_secret_file, log_path=self.paths.log("proxy"), origins=origins,
            upstream_ca=self.paths.ca_file,  # the CDN's certificate comes from the proxy's own CA
        )
        self.state.proxy_urls = {origin: loopback_url(port) for origin, port in origins.items()}
        self.state.proxy_url = self.state.proxy_urls["client"]
        self.state.control_url = loopback_url(control_port)
        self.state.ca_file = str(self.paths.ca_file)
        self._launch(proxy, wait=False)

    def _start_mirror(self, registry: str, base: dict | None) -> None:
        log.info("starting mirror under test (distribution, proxy mode)")
        port = self._ports["mirror"]
        self.state.ports["mirror"] = port
        self.paths.mirror_storage.mkdir(parents=True, exist_ok=True)
        self.state.mirror_storage = str(self.paths.mirror_storage)
        settings = self.spec.mirror
        login = settings.upstream_login
        built = mirror_config_from(
            base, self.paths.mirror_storage, port, REGISTRY_URL,
            username=login, password=self.spec.password_of(login) if login else None, ttl_s=settings.ttl_s,
        )
        if base is not None:
            self.state.mirror_overrides = list(built.overridden)
            log.info("mirror config from %s: the lab set %s; the rest is yours", settings.config_file,
                     ", ".join(built.overridden) or "nothing")
        if login:
            log.info("mirror logs in to Hub as %s (proxy.username; its password is in %s only)",
                     login, self.paths.mirror_config)
        mirror = pull_through_mirror(
            binary=registry, port=port, storage=self.paths.mirror_storage, config_path=self.paths.mirror_config,
            log_path=self.paths.log("mirror"), remote_url=REGISTRY_URL,
            https_proxy=self.state.proxy_urls["mirror"], ca_file=self.paths.ca_file, config=built.config,
        )
        self.state.mirror_url = mirror.url
        self._launch(mirror, wait=False)

    def _start_push_registry(self, registry: str) -> None:
        log.info("starting push registry (shares the mirror's storage)")
        port = self._ports["push-registry"]
        self.state.ports["push-registry"] = port
        push = push_registry(
            binary=registry, port=port, storage=self.paths.mirror_storage,
            config_path=self.paths.push_registry_config, log_path=self.paths.log("push-registry"),
            https_proxy=self.state.proxy_urls["push-registry"], ca_file=self.paths.ca_file,
        )
        self.state.push_registry_url = push.url
        self._launch(push, wait=False)

    def _start_dockerd(self) -> None:
        self.dockerd = LabDockerd(
            self.paths,
            mirror_url=self.state.mirror_url,
            proxy_url=self.state.proxy_url,
            ca_file=self.state.ca_file,
            detached=self.detached,
        )
        # For `chaos lab down` and the next start, which have only lab.json to go by.
        self.state.docker_exec_root = str(self.paths.dockerd_exec_root)
        # A failed start cleans up after itself (LabDockerd.start) and raises here.
        self.state.docker_host = self.dockerd.start(on_started=lambda process: self._record("dockerd", process))
        self._save_state()

    def _start_containerd(self) -> None:
        self.containerd = LabContainerd(
            self.paths, mirror_url=self.state.mirror_url, ca_file=self.state.ca_file, detached=self.detached,
        )
        self.state.containerd_hosts_dir = self.containerd.hosts_dir
        self.state.containerd_address = self.containerd.start(
            on_started=lambda process: self._record("containerd", process)
        )
        self._save_state()

    def _seed(self) -> None:
        Seeder(self.state.hub_url, self.signer, seed=self.spec.seed).seed_all(self.spec.images)

    # -- changes during a run -------------------------------------------------

    def problems(self) -> dict[str, str]:
        """Components that are not running, each with why: its exit code and
        the line of its log that says most (a Go panic's cause, else the last)."""
        found = {}
        for name, process in self.components.items():
            if process.proc is None or process.alive():
                continue
            found[name] = f"exited with code {process.proc.returncode}" + (
                f": {line}" if (line := telling_line(process.log_path, since=process.log_offset)) else "")
        return found

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
        self.accounts = Accounts(repositories=repositories, password_hashes=dict(self.accounts.password_hashes))
        self.accounts.to_file(self.paths.accounts_file)  # the auth service reloads it
        return Seeder(self.state.hub_url, self.signer, seed=content_seed).publish(image)

    def _save_state(self) -> None:
        self.state.save(self.paths.state_file)


@contextmanager
def _signals_held() -> Iterator[list[int]]:
    """SIGINT and SIGTERM arriving inside the block are held (logged, not
    raised) so a teardown always finishes; yields the list of those that
    came. Only the main thread receives signals: elsewhere, nothing to hold."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, frame: object) -> None:
        if not held:
            log.info("still stopping the lab: its teardown finishes first")
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
