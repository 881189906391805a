"""What the mirror holds: its catalog (API) and its storage folder (disk).

Both, because they can disagree: the catalog is what the mirror says, the
folder is what it really kept (the blog post checks repositories/library/postgres).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests

_REPOS = Path("docker/registry/v2/repositories")
# The proxy's TTL bookkeeping (distribution's scheduler), rewritten up to 5 s
# after a pull: not content, and its late writes would blame the next step.
_SCHEDULER_STATE = "scheduler-state.json"


@dataclass(frozen=True)
class MirrorSnapshot:
    catalog: tuple[str, ...]
    stored_repositories: tuple[str, ...]  # repositories with at least one manifest on disk
    storage_bytes: int
    catalog_error: str | None = None  # the mirror did not answer its catalog API
    storage_checked: bool = True  # False: no storage folder to read (a target without target.storage)

    def to_dict(self) -> dict:
        return {
            "catalog": list(self.catalog),
            "stored_repositories": list(self.stored_repositories),
            "storage_bytes": self.storage_bytes,
            "catalog_error": self.catalog_error,
            "storage_checked": self.storage_checked,
        }

    def holds(self, repository: str) -> dict[str, bool]:
        """Where the repository shows, by source looked at (in_catalog, in_storage);
        a source that could not be looked at is left out."""
        found = {}
        if not self.catalog_error:
            found["in_catalog"] = repository in self.catalog
        if self.storage_checked:
            found["in_storage"] = repository in self.stored_repositories
        return found


SETTLE_DEADLINE_S = 5.0
SETTLE_INTERVAL_S = 0.2
# An upload no file of which changed for this long is abandoned (a fetch that
# failed leaves its folder behind until distribution's purger runs, a week later).
UPLOAD_IDLE_S = 2.0


def snapshot(mirror_url: str, storage: Path | None, *, settle: bool = False, timeout: float = 10.0) -> MirrorSnapshot:
    """settle: wait for the storage size to stop changing (for comparisons)."""
    if storage is None:
        size = 0
    else:
        size = settled_bytes(storage) if settle else _tree_bytes(storage)
    try:
        catalog, error = tuple(sorted(_catalog(mirror_url, timeout))), None
    except (requests.RequestException, ValueError) as exc:
        # A mirror that is down (a restart step, a crash) is a finding, not a crash of ours.
        catalog, error = (), f"catalog of {mirror_url} unavailable: {exc}"
    return MirrorSnapshot(
        catalog=catalog,
        stored_repositories=tuple(sorted(_stored_repositories(storage))) if storage else (),
        storage_bytes=size,
        catalog_error=error,
        storage_checked=storage is not None,
    )


def settled_bytes(storage: Path) -> int:
    """Storage size once it stops changing.

    distribution's proxy serves a blob to the client while it copies it into
    its own storage, so the copy can finish after the pull returned; reading
    too early would blame a later step for this one's writes. The copy grows
    under `_uploads` (not counted) and lands in the blob store whole at commit,
    so the kept size alone stands still during a copy: settled means the kept
    size unchanged over SETTLE_INTERVAL_S and no upload alive (see
    live_uploads). SETTLE_DEADLINE_S bounds the wait.
    """
    last = _tree_bytes(storage)
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL_S)
        current = _tree_bytes(storage)
        if current == last and not live_uploads(storage):
            return current
        last = current
    return last


def live_uploads(storage: Path, idle_s: float = UPLOAD_IDLE_S) -> int:
    """Uploads the mirror is writing: folders under a repository's `_uploads`
    with a file changed in the last idle_s seconds. distribution creates one
    (its `startedat` file first) as soon as it starts copying a blob from
    upstream into its storage, and removes it at commit."""
    # The mirror removes upload folders while this looks: os.walk skips what
    # vanished (it ignores listing errors), and so does every stat here.
    newest: dict[str, float] = {}  # upload folder -> newest mtime of its files
    for dirpath, dirnames, filenames in os.walk(storage / _REPOS):
        # Polled every 50 ms at each step's end: skip the link trees (one folder
        # per manifest and layer), where no upload ever is.
        dirnames[:] = [d for d in dirnames if d not in ("_manifests", "_layers")]
        parts = Path(dirpath).parts
        if "_uploads" not in parts:
            continue
        index = parts.index("_uploads")
        if len(parts) == index + 1:
            continue  # the _uploads folder itself
        upload = str(Path(*parts[: index + 2]))
        for name in filenames:
            try:
                mtime = os.stat(os.path.join(dirpath, name)).st_mtime
            except OSError:
                continue
            newest[upload] = max(newest.get(upload, 0.0), mtime)
    now = time.time()
    return sum(1 for mtime in newest.values() if now - mtime < idle_s)


def _catalog(mirror_url: str, timeout: float) -> list[str]:
    names: list[str] = []
    url = f"{mirror_url}/v2/_catalog?n=1000"
    for _ in range(100):  # pagination, bounded
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        names.extend(response.json().get("repositories") or [])
        link = response.links.get("next", {}).get("url")
        if not link:
            break
        url = requests.compat.urljoin(mirror_url, link)
    return names


def _stored_repositories(storage: Path) -> list[str]:
    root = storage / _REPOS
    found = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, _ in os.walk(root):
        if "_manifests" in dirnames:
            revisions = Path(dirpath, "_manifests", "revisions")
            if revisions.is_dir() and any(revisions.rglob("link")):
                found.append(str(Path(dirpath).relative_to(root)))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
    return found


def _tree_bytes(storage: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(storage):
        # In-flight uploads are scratch space, not content the mirror keeps.
        dirnames[:] = [d for d in dirnames if d != "_uploads"]
        for name in filenames:
            if name == _SCHEDULER_STATE and Path(dirpath) == storage:
                continue
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


class MirrorProbe:
    """The mirror under test, looked at from outside: its catalog API, and its
    storage folder when that is ours to read (the lab's, or a target's given one)."""

    def __init__(self, mirror_url: str, storage: str | Path | None):
        self.mirror_url = mirror_url
        self.storage = Path(storage) if storage else None

    def snapshot(self, *, settle: bool = False) -> MirrorSnapshot | None:
        """None when there is no mirror to look at."""
        if not self.mirror_url:
            return None
        return snapshot(self.mirror_url, self.storage, settle=settle)

    def live_uploads(self) -> int:
        return live_uploads(self.storage) if self.storage else 0
