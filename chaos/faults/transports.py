"""Reach the sockets behind a live flow. The one place that uses mitmproxy internals.

mitmproxy's addon API has no way to pause reading from a server connection or
to abort a client connection with a TCP RST; the bandwidth and reset faults need
both. mitmproxy 11 keeps, in its `proxyserver` addon, one connection handler per
client connection (`connections[client.id]`), and each handler maps its
Connection objects to their asyncio streams (`transports[conn].writer`). If that
ever changes these functions return None and the callers fall back (see each).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from mitmproxy import ctx

log = logging.getLogger(__name__)


def _connection_io(flow: Any, connection: Any) -> Any:
    return _io(flow.client_conn, connection)


def _io(client_conn: Any, connection: Any) -> Any:
    try:
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections[client_conn.id]
        return handler.transports[connection]
    except (AttributeError, KeyError, LookupError):
        return None


def idle_stream(client_conn: Any, connection: Any) -> tuple[asyncio.Transport, socket.socket] | None:
    """The transport and TCP socket of one of a client's connections, when
    nothing is waiting in mitmproxy's buffers for it: no bytes read and not yet
    handed to the layers, none written and not yet sent. Only then may the
    socket be served by someone else without reordering bytes (a tunnel relayed
    unopened, chaos.proxy.passthrough). None otherwise, or when it cannot be reached."""
    io = _io(client_conn, connection)
    writer, reader = getattr(io, "writer", None), getattr(io, "reader", None)
    transport = getattr(writer, "transport", None)
    if transport is None or reader is None or not hasattr(transport, "pause_reading") or transport.is_closing():
        return None
    pending = getattr(reader, "_buffer", None)
    if pending is None or len(pending) or transport.get_write_buffer_size():
        return None
    sock = writer.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return None
    return transport, sock


def shutdown_connection(client_conn: Any) -> bool:
    """Close a client connection now, from outside its flows: shutdown(2) sends
    the FIN at once (a transport's close() would wait for the next turn of the
    event loop), and mitmproxy then reads EOF and tears the connection down as
    if the client had left. False when the socket cannot be reached."""
    writer = getattr(_io(client_conn, client_conn), "writer", None)
    get_extra_info = getattr(writer, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    if sock is None:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False  # already gone
    return True


def server_transport(flow: Any) -> asyncio.Transport | None:
    """The asyncio transport mitmproxy reads this flow's upstream response from."""
    io = _connection_io(flow, flow.server_conn)
    transport = getattr(getattr(io, "writer", None), "transport", None)
    if transport is None or not hasattr(transport, "pause_reading"):
        return None
    return transport


def client_socket(flow: Any) -> socket.socket | None:
    """The TCP socket to this flow's client (under TLS, if any)."""
    io = _connection_io(flow, flow.client_conn)
    writer = getattr(io, "writer", None)
    get_extra_info = getattr(writer, "get_extra_info", None)
    if get_extra_info is None:
        return None
    sock = get_extra_info("socket")
    return sock if sock is not None and sock.type == socket.SOCK_STREAM else None


def reset_on_close(flow: Any) -> bool:
    """Make closing this flow's client connection send a TCP RST instead of a FIN.

    SO_LINGER with a zero timeout makes close() abort the connection. Only for
    HTTP/1 clients: on HTTP/2 killing a flow resets its stream, not the
    connection other streams share. Returns False when it cannot be done.
    """
    if flow.client_conn.alpn == b"h2":
        return False
    sock = client_socket(flow)
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError as err:
        log.info(f"hub-chaos: cannot arrange a TCP reset: {err}")
        return False
    return True
