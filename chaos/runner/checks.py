"""`check` steps (and `wait: {until: ...}`): what the mirror holds and what
the tap saw, judged against earlier steps' snapshots."""

from __future__ import annotations

from collections.abc import Callable

from chaos.runner.expectations import Verdict, count_verdicts
from chaos.runner.mirror_probe import MirrorSnapshot
from chaos.scenario.model import CheckAction


def judge_check(
    check: CheckAction,
    snap: MirrorSnapshot,
    snapshots: dict[str, MirrorSnapshot],
    events_since: Callable[[str], list[dict]],
) -> list[Verdict]:
    verdicts = []
    if snap.catalog_error and (check.cached or check.not_cached or check.catalog_unchanged_since):
        verdicts.append(Verdict("mirror answers its catalog API", True, snap.catalog_error, False))
    for repo in check.cached:
        actual = {"in_catalog": repo in snap.catalog, "in_storage": repo in snap.stored_repositories}
        verdicts.append(Verdict(f"cached {repo}", {"in_catalog": True, "in_storage": True}, actual, all(actual.values())))
    for repo in check.not_cached:
        actual = {"in_catalog": repo in snap.catalog, "in_storage": repo in snap.stored_repositories}
        verdicts.append(Verdict(f"not cached {repo}", {"in_catalog": False, "in_storage": False}, actual, not any(actual.values())))
    if check.storage_unchanged_since:
        before = snapshots[check.storage_unchanged_since].storage_bytes
        verdicts.append(Verdict(f"storage bytes unchanged since {check.storage_unchanged_since}", before, snap.storage_bytes, before == snap.storage_bytes))
    if check.storage_grew_since:
        before = snapshots[check.storage_grew_since].storage_bytes
        verdicts.append(Verdict(f"storage bytes grew since {check.storage_grew_since}", f"> {before}", snap.storage_bytes, snap.storage_bytes > before))
    if check.catalog_unchanged_since:
        before = snapshots[check.catalog_unchanged_since].catalog
        verdicts.append(Verdict(f"catalog unchanged since {check.catalog_unchanged_since}", list(before), list(snap.catalog), before == snap.catalog))
    if check.tap_counts:
        verdicts += count_verdicts(f"tap since {check.tap_since}", check.tap_counts, events_since(check.tap_since))
    return verdicts
