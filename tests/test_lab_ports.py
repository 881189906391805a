"""Lab ports come from outside the kernel's ephemeral range, where outgoing
connections and binds to port 0 never land; a component is ready only once
its own process holds its port (a program that took the port first answers
probes too); a lab whose port is taken anyway between the choice and the
child's bind starts again on other ports, and one that cannot find free ports
in three starts fails with nothing left behind."""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from chaos.errors import ComponentFailed, PortInUse
from chaos.lab import lab as lab_module
from chaos.lab.lab import Lab
from chaos.lab.layout import LabPaths, LabState
from chaos.lab.ports import (
    PORT_CEILING,
    PORT_FLOOR,
    ephemeral_range,
    free_port,
    free_ports,
    listening_socket_inodes,
    quiet_ranges,
)
from chaos.lab.process import OWNERSHIP_GRACE_S, ManagedProcess, group_listens_on
from chaos.language.model import LabSpec, SeedImage
from chaos.vocab.reference import parse_reference
from tests.lab_helpers import listening, processes_mentioning
from tests.test_lab_process import lab_log


def listener(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_the_ephemeral_range_is_read_from_the_kernel_with_linux_default_when_unreadable(tmp_path):
    custom = tmp_path / "range"
    custom.write_text("40000\t50000\n")
    assert ephemeral_range(custom) == (40000, 50000)
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
    custom.write_text("garbage")
    assert ephemeral_range(custom) == (32768, 60999)


def test_quiet_ranges_are_both_sides_of_the_ephemeral_range_above_the_floor():
    assert quiet_ranges((32768, 60999)) == [range(PORT_FLOOR, 32768), range(61000, PORT_CEILING + 1)]
    assert quiet_ranges((1024, 65535)) == []
    assert quiet_ranges((10000, 30000)) == [range(30001, PORT_CEILING + 1)]


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range():
    low, high = ephemeral_range()
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(PORT_FLOOR <= port <= PORT_CEILING and not low <= port <= high for port in ports)
    with ExitStack() as stack:
        for port in ports:
            stack.enter_context(listener(port))


def test_free_ports_fall_back_to_the_kernels_pick_when_no_quiet_port_is_left(monkeypatch):
    monkeypatch.setattr("chaos.lab.ports.quiet_ranges", lambda ephemeral: [])
    low, high = ephemeral_range()
    assert all(low <= port <= high for port in free_ports(3))


def test_a_taken_port_is_never_chosen(monkeypatch):
    with listener(free_port()) as taken:
        port = taken.getsockname()[1]
        monkeypatch.setattr("chaos.lab.ports.quiet_ranges", lambda ephemeral: [range(port, port + 1)])
        (chosen,) = free_ports(1)
    low, high = ephemeral_range()
    assert chosen != port and low <= chosen <= high  # the kernel's pick, after the draws found nothing


def test_a_child_that_finds_its_port_taken_is_a_port_in_use_naming_it(tmp_path):
    with listener(free_port()) as taken:
        port = taken.getsockname()[1]
        child = ManagedProcess("server", ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                               tmp_path / "server.log", ports=(port,))
        child.start()
        with pytest.raises(PortInUse) as caught:
            child.wait_ready(lambda: False, deadline_s=20)
    assert (caught.value.component, caught.value.port) == ("server", port)
    assert "server exited with code 1 before it was ready" in str(caught.value)
    assert caught.value.exit_code == 3


def test_a_port_clash_is_told_by_this_starts_log_and_a_listener_on_the_childs_own_port(tmp_path):
    log = tmp_path / "hub.log"
    log.write_text("level=fatal msg=\"listen tcp 127.0.0.1:5000: bind: address already in use\"\n")  # an earlier start's
    with listener(free_port()) as taken:
        port = taken.getsockname()[1]
        child = ManagedProcess("hub", ["sh", "-c", "echo 'configuration error: bad storage'; exit 1"], log, ports=(port,))
        child.start()
        with pytest.raises(ComponentFailed) as caught:
            child.wait_ready(lambda: False, deadline_s=10)
    assert not isinstance(caught.value, PortInUse)
    assert "configuration error" in str(caught.value) and "address already in use" not in str(caught.value)
    # A clash on a port the lab did not choose (a debug address in the user's config): no new choice mends it.
    free = free_port()
    child = ManagedProcess("mirror", ["sh", "-c", "echo 'listen tcp :5001: bind: address already in use'; exit 1"],
                           tmp_path / "mirror.log", ports=(free,))
    child.start()
    with pytest.raises(ComponentFailed) as caught:
        child.wait_ready(lambda: False, deadline_s=10)
    assert not isinstance(caught.value, PortInUse) and "listen tcp :5001" in str(caught.value)


def test_a_probe_answered_by_another_program_on_the_port_is_not_readiness(tmp_path):
    with listener(free_port()) as taken:
        port = taken.getsockname()[1]
        child = ManagedProcess("impostor-victim", ["sleep", "30"], tmp_path / "child.log", ports=(port,))
        child.start()
        with child, pytest.raises(ComponentFailed) as caught:
            child.wait_ready(lambda: True, deadline_s=1)
    assert str(caught.value).startswith(f"impostor-victim was not ready within 1s; port {port} answers, but process "
                                        f"{os.getpid()} holds it, not impostor-victim; last lines of ")


def test_where_proc_shows_no_holder_a_child_still_alive_after_the_grace_is_believed(tmp_path, monkeypatch, caplog):
    # As under a /proc without socket tables, or a registry wrapper whose container runtime holds the port.
    monkeypatch.setattr("chaos.lab.process.port_holders", lambda port, among=None: [])
    port = free_port()
    child = ManagedProcess("wrapped", ["sleep", "30"], tmp_path / "child.log", ports=(port,))
    child.start()
    with child, caplog.at_level(logging.WARNING, logger="chaos.lab.process"):
        started = time.monotonic()
        child.wait_ready(lambda: True, deadline_s=20)
        assert time.monotonic() - started >= OWNERSHIP_GRACE_S
    assert f"wrapped: /proc shows no process listening on port {port}; wrapped has answered there for " \
           f"{OWNERSHIP_GRACE_S:g}s and is taken at its word" in caplog.messages


def test_a_child_holding_its_own_port_is_ready(tmp_path):
    port = free_port()
    child = ManagedProcess("server", ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                           tmp_path / "server.log", ports=(port,))
    child.start()
    with child:
        child.wait_ready(lambda: listening([port]) == [port], deadline_s=20)
        assert group_listens_on(child.pid, port)
    assert not group_listens_on(child.pid, port)


def test_listening_sockets_are_read_from_the_kernel_tables(tmp_path):
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n"
        "   1: 0100007F:4E21 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n"
        "   2: 0100007F:4E22 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1\n"
    )
    assert listening_socket_inodes(0x4E21, (table,)) == {"111"}  # the listener, not the connection
    assert listening_socket_inodes(0x4E23, (table,)) == set()
    assert listening_socket_inodes(0x4E21, (tmp_path / "missing",)) is None
    with listener(free_port()) as held:
        assert listening_socket_inodes(held.getsockname()[1])  # the real tables know it


def test_any_other_early_death_is_not_a_port_in_use(tmp_path):
    child = ManagedProcess("broken", ["sh", "-c", "echo 'permission denied'; exit 2"], tmp_path / "broken.log")
    child.start()
    with pytest.raises(ComponentFailed) as caught:
        child.wait_ready(lambda: False, deadline_s=10)
    assert not isinstance(caught.value, PortInUse)


TINY = SeedImage(parse_reference("alpine:3.19"), 50_000, layers=1)


@pytest.mark.lab
def test_a_lab_whose_port_is_taken_before_its_proxy_binds_starts_again_on_other_ports(tmp_path):
    lab = Lab(LabSpec(images=(TINY,)), tmp_path)
    taken = lab._ports["proxy"]
    with lab_log() as messages, listener(taken), lab:
        assert lab.state.ports["proxy"] != taken
        assert requests.get(f"{lab.state.mirror_url}/v2/", timeout=5).ok
        assert all(process.alive() for process in lab.components.values())
        assert not lab.stopped
        assert LabState.load(LabPaths(tmp_path).state_file).status == "running"
        ports, scratch = list(lab.state.ports.values()), lab.state.scratch
    assert lab.stopped and not listening(ports) and not processes_mentioning(scratch)
    assert ("chaos.lab.lab", logging.INFO, f"another program took port {taken} of the proxy as it started; starting "
            "the lab again on other ports (attempt 2 of 3)") in messages


@pytest.mark.lab
def test_a_lab_that_finds_its_ports_taken_three_times_fails_with_nothing_left(tmp_path, monkeypatch):
    lab = Lab(LabSpec(images=(TINY,)), tmp_path)
    taken = lab._ports["hub"]
    # Every new choice hands out the same taken hub port again.
    monkeypatch.setattr(lab_module, "free_ports", lambda count: [taken, *free_ports(count - 1)])
    with listener(taken), pytest.raises(PortInUse) as caught, lab:
        pass
    assert (caught.value.component, caught.value.port) == ("hub", taken)
    assert str(caught.value).startswith("3 starts of the lab each found a port it had chosen taken by another program; "
                                        "the last: hub exited with code 1 before it was ready")
    assert lab.stopped and not lab.components
    assert not processes_mentioning(str(tmp_path))
    state = LabState.load(LabPaths(tmp_path).state_file)
    assert state.status == "stopped" and not Path(state.scratch).exists()
