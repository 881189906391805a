"""A scenario's `target:`: an existing mirror and fault proxy, described with
the same LabState the embedded lab writes, so the runner treats both alike."""

from __future__ import annotations

from chaos.lab.layout import LabState
from chaos.language.model import Target


def state_for_target(target: Target) -> LabState:
    return LabState(
        root="",
        mirror_url=target.mirror_url,
        control_url=target.control_url,
        proxy_url=target.proxy_url or "",
        ca_file=target.ca_file or "",
        mirror_storage=target.storage or "",
        users={user.name: user.password for user in target.users},
    )
