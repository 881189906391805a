"""Who sent a request: the origin of each proxy listener (the hub_origins option).

The mirror, the client engine and the push registry all reach the proxy from
127.0.0.1, so their addresses cannot tell them apart; their listeners can.
mitmproxy runs several modes on several ports in one process
(`--mode regular@8081 --mode regular@8082`), and `hub_origins` names the origin
of each port: "mirror=8081,client=8082,push-registry=8083". A request that came
in on any other listener has origin "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from chaos.errors import quoted
from chaos.faults.match import UNKNOWN
from chaos.vocab.names import ORIGINS

NAMED_ORIGINS = tuple(o for o in ORIGINS if o != UNKNOWN)
"""What hub_origins may name; "unknown" is what every other listener's requests get."""


def parse_origins(text: str) -> Mapping[int, str]:
    """"mirror=8081,client=8082" -> {8081: "mirror", 8082: "client"}; "" -> {}.

    Raises ValueError naming the bad item: an origin outside NAMED_ORIGINS, a
    port that is not 1..65535, an origin or a port given twice.
    """
    ports: dict[int, str] = {}
    if not text.strip():
        return MappingProxyType(ports)
    for item in (part.strip() for part in text.split(",")):
        origin, sep, port_text = item.partition("=")
        origin, port_text = origin.strip(), port_text.strip()
        if not sep or not origin:
            raise ValueError(f"item {quoted(item)} is not ORIGIN=PORT")
        if origin not in NAMED_ORIGINS:
            raise ValueError(f"unknown origin {quoted(origin)} (expected one of: {', '.join(NAMED_ORIGINS)})")
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port {quoted(port_text)} of {origin} must be a number from 1 to 65535")
        port = int(port_text)
        if port in ports:
            raise ValueError(f"port {port} given to both {ports[port]} and {origin}")
        if origin in ports.values():
            raise ValueError(f"origin {origin} given twice")
        ports[port] = origin
    return MappingProxyType(ports)


def listener_port(flow: Any) -> int | None:
    """The local port the client connected to: which listener took the flow."""
    sockname = flow.client_conn.sockname
    return sockname[1] if sockname and sockname[1] else None


def origin_of(flow: Any, origins: Mapping[int, str]) -> str:
    return origins.get(listener_port(flow) or 0, UNKNOWN)
