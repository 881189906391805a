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

    def to_dict(self) -> dict:
        return {
            "catalog": list(self.catalog),
            "stored_repositories": list(self.stored_repositories),
            "storage_bytes": self.storage_bytes,
            "catalog_error": self.catalog_error,
        }


SETTLE_DEADLINE_S = 5.0
SETTLE_INTERVAL_S = 0.2
UPLOAD_STALL_READS = 3


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
    )


def settled_bytes(storage: Path) -> int:
    """Storage size once it stops changing.

    distribution's proxy serves a blob to the client while it copies it into
    its own storage, so the copy can finish after the pull returned; reading
    too early would blame a later step for this one's writes. The copy grows
    under `_uploads` (not counted) and lands in the blob store whole at commit,
    so the kept size alone stands still during a copy: the uploads are
    watched too. Settled: kept and in-flight bytes unchanged over one
    SETTLE_INTERVAL_S with no upload in flight, or over UPLOAD_STALL_READS
    intervals with one (an upload abandoned by a failed fetch never commits).
    SETTLE_DEADLINE_S bounds the wait.
    """
    last = _storage_bytes(storage)
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    unchanged = 0
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL_S)
        current = _storage_bytes(storage)
        unchanged = unchanged + 1 if current == last else 0
        last = current
        kept, in_flight = current
        if unchanged >= (UPLOAD_STALL_READS if in_flight else 1):
            return kept
    return last[0]


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
    return _storage_bytes(storage)[0]


def _storage_bytes(storage: Path) -> tuple[int, int | None]:
    """(bytes the mirror keeps, bytes of uploads in flight or None when there is none).

    In-flight uploads are scratch space, not content the mirror keeps."""
    kept, in_flight = 0, None
    for dirpath, dirnames, filenames in os.walk(storage):
        uploading = "/_uploads" in dirpath[len(str(storage)):]
        for name in filenames:
            if name == _SCHEDULER_STATE and Path(dirpath) == storage:
                continue
            try:
                size = os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
            if uploading:
                in_flight = (in_flight or 0) + size
            else:
                kept += size
    return kept, in_flight
