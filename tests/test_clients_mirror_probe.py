"""Reading what a mirror holds from its storage folder."""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import contextmanager

from chaos.clients import mirror_probe

REPOS = "docker/registry/v2/repositories"


def an_upload(root, name: str, content: bytes):
    """An upload in flight, as distribution keeps it: repositories/<repo>/_uploads/<id>/<name>."""
    upload = root / REPOS / "library/alpine/_uploads/u1"
    upload.mkdir(parents=True)
    (upload / name).write_bytes(content)
    return upload


@contextmanager
def in_background(work):
    """Run work() in a thread (the mirror writing) while the body reads."""
    thread = threading.Thread(target=work)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=5)


def make_repo(storage, name, with_manifest=True):
    repo = storage / REPOS / name
    (repo / "_layers").mkdir(parents=True)
    if with_manifest:
        link = repo / "_manifests" / "revisions" / "sha256" / ("a" * 64) / "link"
        link.parent.mkdir(parents=True)
        link.write_text("sha256:" + "a" * 64)


def test_stored_repositories_need_a_manifest(tmp_path):
    make_repo(tmp_path, "library/alpine")
    make_repo(tmp_path, "alice/app")
    make_repo(tmp_path, "library/half", with_manifest=False)
    assert sorted(mirror_probe._stored_repositories(tmp_path)) == ["alice/app", "library/alpine"]


def test_uploads_in_flight_are_not_counted(tmp_path):
    (tmp_path / "blob").write_bytes(b"x" * 100)
    uploads = tmp_path / REPOS / "library/alpine/_uploads/u1"
    uploads.mkdir(parents=True)
    (uploads / "data").write_bytes(b"y" * 1000)
    assert mirror_probe._tree_bytes(tmp_path) == 100


def test_the_proxys_ttl_bookkeeping_is_not_counted(tmp_path):
    (tmp_path / "blob").write_bytes(b"x" * 100)
    (tmp_path / "scheduler-state.json").write_text('{"library/alpine": {"Expiry": "2026-12-05T00:00:00Z"}}')
    nested = tmp_path / REPOS / "scheduler-state.json"  # only the one at the root is bookkeeping
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"z" * 10)
    assert mirror_probe._tree_bytes(tmp_path) == 110


def test_settled_bytes_waits_for_background_writes(tmp_path):
    # A writer still copying (as distribution does after serving a blob).
    def writer():
        for i in range(4):
            (tmp_path / f"part{i}").write_bytes(b"z" * 10)
            time.sleep(0.05)

    with in_background(writer):
        assert mirror_probe.settled_bytes(tmp_path) == 40


def test_settled_bytes_waits_for_an_upload_to_commit(tmp_path):
    # distribution copies a blob into _uploads (not counted), then moves it in whole.
    upload = an_upload(tmp_path, "data", b"y" * 1000)

    def commit():
        time.sleep(0.5)  # longer than one settle interval: the kept size stands still meanwhile
        blob = tmp_path / "blobs/sha256/ab/abcd"
        blob.mkdir(parents=True)
        (upload / "data").rename(blob / "data")
        upload.rmdir()

    with in_background(commit):
        assert mirror_probe.settled_bytes(tmp_path) == 1000


def test_an_abandoned_upload_does_not_hold_the_settle_to_its_deadline(tmp_path):
    upload = an_upload(tmp_path, "data", b"y" * 1000)
    stale = time.time() - 60  # a fetch that failed a minute ago left it behind
    os.utime(upload / "data", (stale, stale))
    assert mirror_probe.live_uploads(tmp_path) == 0
    started = time.monotonic()
    assert mirror_probe.settled_bytes(tmp_path) == 0
    assert time.monotonic() - started < mirror_probe.SETTLE_DEADLINE_S / 2


def test_a_fresh_upload_is_alive_even_before_its_first_byte(tmp_path):
    # distribution writes `startedat` first; the fetch may start a moment later.
    an_upload(tmp_path, "startedat", b"2026-11-28T18:38:02Z")
    assert mirror_probe.live_uploads(tmp_path) == 1
    assert mirror_probe.live_uploads(tmp_path / "elsewhere") == 0


def test_uploads_vanishing_while_counted_are_never_an_error(tmp_path):
    # The mirror commits (removes) upload folders at any moment; counting must not trip over it.
    stop = threading.Event()

    def churn():
        n = 0
        while not stop.is_set():
            # distribution's layout: startedat, data, hashstates/sha256/<offset>; removed whole at commit.
            upload = tmp_path / REPOS / f"library/r{n % 5}/_uploads/u{n}"
            hashstates = upload / "hashstates" / "sha256"
            hashstates.mkdir(parents=True, exist_ok=True)
            (upload / "startedat").write_text("now")
            (hashstates / "0").write_bytes(b"state")
            shutil.rmtree(upload)
            n += 1

    with in_background(churn):
        try:
            for _ in range(300):  # a glob-based walk raised FileNotFoundError 17 times in 300 here
                # No error; and at most one upload per repository listing can be seen alive.
                assert 0 <= mirror_probe.live_uploads(tmp_path) <= 5
        finally:
            stop.set()
