"""Free loopback ports for lab components.

A port is chosen here and bound later by a child, so another program can take
it in between. The ephemeral range is where that happens all the time: every
outgoing connection on the machine and every bind to port 0 takes its port
from there. So ports are drawn at random from outside it (between
PORT_FLOOR and the range, or above it), where only a program that names its
port can land, and checked free by binding them. Another lab that draws the
same port in the same instant is still possible: the child then fails with
"address already in use", which ManagedProcess.wait_ready reports as
PortInUse, and the lab starts again on other ports (chaos.lab.lab). Until it
dies, a readiness probe of that port would be answered by the other program:
so a component counts as ready only once its own process group holds the
port's listening socket (chaos.lab.process.group_listens_on).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Below this sit the ports services like to name (5000, 8080, 9000...).
PORT_FLOOR = 20000
PORT_CEILING = 65535
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
SOCKET_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_LISTEN = "0A"  # the TCP state LISTEN in those tables
_DRAWS = 200  # draws before giving up on the quiet ranges and asking the kernel
# Its own generator: a test that seeds the module's random must not make two
# processes draw the same ports.
_random = random.SystemRandom()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for ports it picks itself (inclusive); Linux's default when unreadable."""
    try:
        low, high = (int(field) for field in path.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def quiet_ranges(ephemeral: tuple[int, int]) -> list[range]:
    """The ports from PORT_FLOOR up that the kernel never picks by itself."""
    low, high = ephemeral
    ranges = [range(PORT_FLOOR, min(low, PORT_CEILING + 1)), range(max(high + 1, PORT_FLOOR), PORT_CEILING + 1)]
    return [r for r in ranges if len(r)]


def _bindable(sock: socket.socket, host: str, port: int) -> bool:
    try:
        sock.bind((host, port))
        return True
    except OSError:
        return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Several distinct free ports outside the ephemeral range. All the probe
    sockets stay bound until every port is picked, so none is handed out twice."""
    ranges = quiet_ranges(ephemeral_range())
    weights = [len(r) for r in ranges]
    sockets: list[socket.socket] = []
    try:
        draws = 0
        while len(sockets) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if ranges and draws < _DRAWS:
                draws += 1
                port = _random.choice(_random.choices(ranges, weights)[0])
            else:
                port = 0  # no quiet port to be found: the kernel's pick
            if _bindable(sock, host, port):
                sockets.append(sock)
            else:
                sock.close()
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening_socket_inodes(port: int, tables: tuple[Path, ...] = SOCKET_TABLES) -> set[str] | None:
    """The inodes of the sockets listening on port, any address, from the
    kernel's socket tables; None when no table can be read."""
    inodes: set[str] | None = None
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        inodes = inodes or set()
        for row in rows:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            fields = row.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes

