"""Managed child processes: readiness with a deadline, early death reported
with the log tail, the whole process group stopped."""

from __future__ import annotations

import time

import pytest

from chaos.errors import ComponentFailed, EnvironmentProblem
from chaos.lab.process import ManagedProcess, group_alive, require_binary


def test_child_that_dies_early_is_reported_with_its_log(tmp_path):
    proc = ManagedProcess("broken", ["sh", "-c", "echo 'bind: address already in use'; exit 7"], tmp_path / "broken.log")
    proc.start()
    with pytest.raises(ComponentFailed) as caught:
        proc.wait_ready(lambda: False, deadline_s=10)
    assert "broken exited with code 7 before it was ready" in str(caught.value)
    assert "address already in use" in str(caught.value)


def test_readiness_deadline_is_bounded(tmp_path):
    proc = ManagedProcess("slow", ["sleep", "60"], tmp_path / "slow.log")
    proc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ComponentFailed, match="slow was not ready within 0.5s"):
            proc.wait_ready(lambda: False, deadline_s=0.5)
        assert time.monotonic() - started < 5
    finally:
        proc.stop()
    assert not proc.alive()


def test_ready_check_exceptions_mean_not_yet(tmp_path):
    proc = ManagedProcess("flaky", ["sleep", "60"], tmp_path / "flaky.log")
    proc.start()
    calls = []

    def check():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not listening yet")
        return True

    try:
        proc.wait_ready(check, deadline_s=10)
        assert len(calls) == 3
    finally:
        proc.stop()


def test_stop_kills_the_whole_group_including_grandchildren(tmp_path):
    # The grandchild ignores SIGTERM, so only a group SIGKILL after the grace period ends it.
    script = "trap '' TERM; sleep 60 & wait"
    proc = ManagedProcess("tree", ["sh", "-c", script], tmp_path / "tree.log")
    proc.start()
    time.sleep(0.2)
    pgid = proc.pid
    assert group_alive(pgid)
    proc.stop(grace_s=0.5)
    assert not group_alive(pgid)


def test_missing_binary_is_an_environment_problem():
    with pytest.raises(EnvironmentProblem, match="no-such-binary-xyz not found: install it"):
        require_binary("no-such-binary-xyz", "install it")


def test_a_go_panic_cause_is_kept_above_its_goroutine_dump(tmp_path):
    from chaos.lab.process import log_tail

    log = tmp_path / "mirror.log"
    dump = "\n".join(f"\tgithub.com/docker/distribution/x.go:{n}" for n in range(40))
    log.write_text('panic: Get "https://registry-1.docker.io/v2/": Bad Gateway\n\ngoroutine 1 [running]:\n' + dump)
    tail = log_tail(log)
    assert tail.splitlines()[0].strip().startswith("panic: Get")
    assert "x.go:39" in tail
