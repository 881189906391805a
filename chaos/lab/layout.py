"""Where a lab keeps its files, and the state file that lets another process
(`chaos lab status|down`, `chaos pull`, the tests) find a running lab.

Two folders:
- the lab folder (`root`, in a run folder: `<run>/lab`): what is evidence
  after the run: lab.json, the logs, the configuration files (secrets
  redacted at stop), the listing of the mirror's storage;
- the scratch folder (`scratch`, a short /tmp/hc-* folder named in lab.json
  before it is created): the bulk and the sockets: the hub's and the
  mirror's storage, the private dockerd's and containerd's roots. Removed at
  stop, or by the next start in the same lab folder after a kill.

No password is ever written to lab.json: the users' passwords, which `chaos
pull --login USER` needs to find, live in users.json (0600), removed at stop.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from chaos.errors import UsageError

STATUSES = ("starting", "running", "stopping", "stopped")
"""A lab's life as lab.json records it: `stopped` only once its teardown completed."""


@dataclass(frozen=True)
class LabPaths:
    root: Path
    scratch: Path | None = None  # the lab's temporary folder (/tmp/hc-*), once chosen

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def users_file(self) -> Path:
        # The lab users' passwords (0600), for `chaos pull --login`: removed at stop.
        return self.root / "users.json"

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
        return self._scratch / "hub-storage"

    @property
    def hub_config(self) -> Path:
        return self.hub / "config.yml"

    @property
    def hub_keys(self) -> Path:
        # The token signer's key and certificate: the auth service signs, the hub trusts.
        return self.hub / "keys"

    @property
    def accounts_file(self) -> Path:
        # Users (password hashes) and repositories; the auth service re-reads it when the lab publishes.
        return self.hub / "accounts.json"

    @property
    def cdn_secret_file(self) -> Path:
        # Shared by the fault proxy (signs redirect URLs) and the CDN (checks them).
        return self.root / "cdn-secret"

    @property
    def cdn_tls(self) -> Path:
        """The CDN's TLS certificate and key (issued by the proxy's CA), removed with the scratch folder."""
        return self._scratch / "cdn-tls"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def mirror_storage(self) -> Path:
        return self._scratch / "mirror-storage"

    @property
    def mirror_config(self) -> Path:
        return self.mirror / "config.yml"

    @property
    def mirror_listing(self) -> Path:
        # Written at stop: every file of the mirror's storage with its size (the storage itself goes).
        return self.mirror / "storage-listing.txt"

    @property
    def push_registry_config(self) -> Path:
        return self.root / "push-registry.yml"

    @property
    def proxy_confdir(self) -> Path:
        return self.root / "proxy"

    @property
    def ca_file(self) -> Path:
        # mitmproxy writes its CA here on first start; clients trust it.
        return self.proxy_confdir / "mitmproxy-ca-cert.pem"

    @property
    def dockerd(self) -> Path:
        # The lab's private Docker daemon (engine "docker"): its config file.
        return self.root / "dockerd"

    @property
    def dockerd_exec_root(self) -> Path:
        # Short: its API socket lives there, and unix socket paths are limited to 107 bytes.
        return self._scratch / "docker"

    @property
    def dockerd_data_root(self) -> Path:
        # Without a scratch folder (a lab.json from before there was one): where it used to be.
        return self.dockerd_exec_root / "root" if self.scratch else self.dockerd / "root"

    @property
    def containerd(self) -> Path:
        # The lab's containerd (engine "containerd"): its config and the hosts.toml folder for ctr.
        return self.root / "containerd"

    @property
    def containerd_scratch(self) -> Path:
        # Its root, state and socket.
        return self._scratch / "containerd"

    @property
    def _scratch(self) -> Path:
        if self.scratch is None:
            raise RuntimeError("this lab has no scratch folder yet (Lab.start chooses it)")
        return self.scratch

    def secret_files(self) -> list[Path]:
        """The files of the lab folder that hold secrets: removed when the lab stops."""
        return [
            self.users_file, self.cdn_secret_file, self.accounts_file, self.hub_keys / "key.pem",
            self.proxy_confdir / "mitmproxy-ca.pem", self.proxy_confdir / "mitmproxy-ca.p12",
        ]


SCRATCH_OWNER = "owner"
"""The file in a scratch folder naming the lab folder it belongs to, so the
next start there finds it even if lab.json is gone."""


def scratch_parents() -> list[Path]:
    """Where scratch folders are made (choose_scratch)."""
    temp = Path(tempfile.gettempdir())
    return list(dict.fromkeys([temp if len(str(temp)) <= 32 else Path("/tmp"), Path("/tmp")]))


def scratches_of(root: Path) -> list[Path]:
    """The scratch folders (in scratch_parents) whose owner file names root."""
    wanted = str(Path(root).resolve())
    found = []
    for parent in scratch_parents():
        for owner in parent.glob(f"hc-*/{SCRATCH_OWNER}"):
            try:
                if owner.read_text().strip() == wanted:
                    found.append(owner.parent)
            except OSError:
                continue
    return found


def make_scratch(scratch: Path, root: Path) -> None:
    """Create the scratch folder (owner only; never one that exists) and its owner file."""
    scratch.mkdir(mode=0o700)
    (scratch / SCRATCH_OWNER).write_text(str(Path(root).resolve()) + "\n")


def choose_scratch(parent: Path | None = None) -> Path:
    """A fresh name for a scratch folder, not yet created: the lab records it
    in lab.json first, so a kill right after the folder appears leaves it
    findable. parent: the temporary directory if its path is short (sockets
    live below), else /tmp."""
    if parent is None:
        parent = scratch_parents()[0]
    while True:
        candidate = parent / f"hc-{os.urandom(4).hex()}"
        if not candidate.exists():
            return candidate


@dataclass
class LabState:
    """What a running lab is: where to reach each part, and which processes are its own."""

    root: str
    status: str = "starting"  # one of STATUSES
    scratch: str = ""  # the scratch folder (see LabPaths.scratch)
    mirror_url: str = ""  # empty when the lab runs no mirror (an external one is tested)
    hub_url: str = ""  # the hub registry on loopback (seeding, publishing; not what clients use)
    auth_url: str = ""
    cdn_url: str = ""  # the blob CDN on loopback (what production.cloudflare.docker.com is routed to)
    proxy_url: str = ""  # the fault proxy's listener for the client engines (origin "client")
    proxy_urls: dict[str, str] = field(default_factory=dict)  # origin -> the fault proxy's listener for it
    control_url: str = ""
    push_registry_url: str = ""
    ca_file: str = ""
    cdn_secret_file: str = ""
    mirror_storage: str = ""
    mirror_overrides: list[str] = field(default_factory=list)  # keys of the user's mirror config the lab set
    # The private dockerd, when the lab was started with the docker engine:
    # its API socket (unix://...) and its exec root, a short folder under /tmp
    # because unix socket paths are limited to 107 bytes.
    docker_host: str = ""
    docker_exec_root: str = ""
    # The private containerd (engine containerd): its socket (ctr --address) and
    # a hosts.toml folder naming the lab mirror first (ctr --hosts-dir).
    containerd_address: str = ""
    containerd_hosts_dir: str = ""
    # Passwords of the lab users: in memory only, never written to lab.json (see users.json).
    users: dict[str, str] = field(default_factory=dict)
    boot_id: str = ""  # process start times count from this boot
    processes: dict[str, dict] = field(default_factory=dict)  # name -> ProcessIdentity.to_dict()
    process_groups: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["users"]
        return data

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        # Not sorted: the order of processes is their start order, which a stop reverses.
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabState:
        """UsageError naming the file when it is not a lab state file."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the lab's state: {exc.strerror}") from exc
        except ValueError as exc:
            raise UsageError(f"{path}: not a lab state file (not JSON: {exc})") from exc
        if not isinstance(data, dict):
            raise UsageError(f"{path}: not a lab state file (expected a JSON object)")
        known = {f.name for f in fields(cls)} - {"users"}
        state = cls(root=str(data.get("root") or Path(path).parent))
        for name, value in data.items():
            if name in known and name != "root":
                setattr(state, name, value)
        return state


def save_users(path: Path, users: dict[str, str]) -> None:
    """The lab users' passwords, readable by their owner only (created 0600, never wider)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(users, out, indent=2, sort_keys=True)
    tmp.replace(path)


def lab_password(lab_dir: Path, user: str) -> str | None:
    """The password of a user of the lab running in lab_dir (what `chaos pull
    --login USER` uses); None when there is no such user, no running lab, or
    the user's password is kept only in the mirror's config (its upstream login)."""
    try:
        users = json.loads(LabPaths(Path(lab_dir)).users_file.read_text())
    except (OSError, ValueError):
        return None
    password = users.get(user) if isinstance(users, dict) else None
    return password if isinstance(password, str) else None
