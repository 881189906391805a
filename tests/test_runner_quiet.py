"""The end-of-step wait: no request in flight through the proxy and no upload
alive in the mirror's storage."""

from __future__ import annotations

import threading
import time

from chaos.clients.mirror_probe import live_uploads
from chaos.runner.quiet import wait_for_quiet

UPLOADS = "docker/registry/v2/repositories/library/alpine/_uploads"


def test_quiet_at_once_when_nothing_happens(tmp_path):
    started = time.monotonic()
    assert wait_for_quiet(lambda: 0, lambda: live_uploads(tmp_path), deadline_s=2, poll_s=0.01)
    assert time.monotonic() - started < 0.5


def test_waits_for_requests_in_flight_to_finish():
    pending = iter([2, 1, 1, 0, 0, 0])
    seen = []

    def in_flight():
        seen.append(next(pending, 0))
        return seen[-1]

    assert wait_for_quiet(in_flight, lambda: 0, deadline_s=2, poll_s=0.01)
    assert seen[:5] == [2, 1, 1, 0, 0]  # two quiet readings in a row, after the busy ones


def test_waits_for_the_mirror_to_commit_an_upload_it_just_started(tmp_path):
    # The mirror's copy has no request in flight yet: only its upload folder says it is busy.
    upload = tmp_path / UPLOADS / "u1"
    upload.mkdir(parents=True)
    (upload / "startedat").write_text("now")

    def commit():
        time.sleep(0.4)
        (upload / "startedat").unlink()
        upload.rmdir()

    thread = threading.Thread(target=commit)
    thread.start()
    try:
        started = time.monotonic()
        assert wait_for_quiet(lambda: 0, lambda: live_uploads(tmp_path), deadline_s=3, poll_s=0.02)
        assert time.monotonic() - started >= 0.35
    finally:
        thread.join(timeout=5)


def test_a_request_that_never_finishes_is_bounded_by_the_deadline(tmp_path):
    started = time.monotonic()
    assert not wait_for_quiet(lambda: 1, lambda: 0, deadline_s=0.3, poll_s=0.02)
    assert time.monotonic() - started < 1.0
