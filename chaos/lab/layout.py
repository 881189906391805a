"""Where a lab keeps its files, and the state file that lets another process
(`chaos lab status|down`, `chaos pull`, the tests) find a running lab."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def hub(self) -> Path:
        return self.root / "hub"

    @property
    def hub_storage(self) -> Path:
        # The hub registry's filesystem root; the blob CDN serves from it too.
        return self.hub / "storage"

    @property
    def hub_config(self) -> Path:
        return self.hub / "config.yml"

    @property
    def hub_keys(self) -> Path:
        # The token signer's key and certificate: the auth service signs, the hub trusts.
        return self.hub / "keys"

    @property
    def accounts_file(self) -> Path:
        # Users and repositories; the auth service re-reads it when the lab publishes.
        return self.hub / "accounts.json"

    @property
    def cdn_secret_file(self) -> Path:
        # Shared by the fault proxy (signs redirect URLs) and the CDN (checks them).
        return self.root / "cdn-secret"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def mirror_storage(self) -> Path:
        return self.mirror / "storage"

    @property
    def mirror_config(self) -> Path:
        return self.mirror / "config.yml"

    @property
    def push_registry_config(self) -> Path:
        return self.root / "push-registry.yml"

    @property
    def proxy_confdir(self) -> Path:
        return self.root / "proxy"

    @property
    def dockerd(self) -> Path:
        # The lab's private Docker daemon (engine "docker"): its config file and data root.
        return self.root / "dockerd"

    @property
    def dockerd_data_root(self) -> Path:
        return self.dockerd / "root"

    @property
    def ca_file(self) -> Path:
        # mitmproxy writes its CA here on first start; clients trust it.
        return self.proxy_confdir / "mitmproxy-ca-cert.pem"


@dataclass
class LabState:
    """What a running lab is: where to reach each part, and which process groups to stop."""

    root: str
    mirror_url: str = ""
    hub_url: str = ""  # the hub registry on loopback (seeding, publishing; not what clients use)
    auth_url: str = ""
    cdn_url: str = ""  # the blob CDN on loopback (what production.cloudflare.docker.com is routed to)
    proxy_url: str = ""
    control_url: str = ""
    push_registry_url: str = ""
    ca_file: str = ""
    mirror_storage: str = ""
    # The private dockerd, when the lab was started with the docker engine:
    # its API socket (unix://...) and its exec root, a short folder under /tmp
    # because unix socket paths are limited to 107 bytes.
    docker_host: str = ""
    docker_exec_root: str = ""
    users: dict[str, str] = field(default_factory=dict)
    process_groups: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "LabState":
        return cls(**json.loads(path.read_text()))
