"""Mount points a lab daemon (dockerd, containerd) may leave under its folders,
and how they go: found in /proc/self/mountinfo, unmounted deepest first."""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from pathlib import Path

_MNT_DETACH = 2


def mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points at or below any of `roots`, deepest first (so each can go)."""
    prefixes = [str(Path(root).resolve()) for root in roots]
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if any(point == prefix or point.startswith(prefix + "/") for prefix in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(roots: Iterable[Path]) -> list[str]:
    """Unmount everything at or below roots; returns what is still mounted."""
    roots = list(roots)
    for point in mounts_under(roots):
        umount(point)
    return mounts_under(roots)


def umount(point: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    # Detach: a mount still busy for a moment must not keep the teardown waiting.
    libc.umount2(point.encode(), _MNT_DETACH)
