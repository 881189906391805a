"""FaultKind: the small interface every fault kind implements.

A kind (refuse.py, latency.py, ...) is a class with a `name`, a `Params`
dataclass whose field names carry their units (`delay_ms`), and only the hooks
it needs; it registers itself with chaos.faults.registry.register. Whether a
fault acts on a request (match, trigger, expiry) is decided outside the kinds,
once: match.py, triggers.py, faultset.py.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chaos.faults.body import BodyFilter

FREE_TEXT = "hub_chaos.free_text"
"""Field metadata marking a parameter that holds text a scenario wrote."""


def free_text() -> Any:
    """A Params field for text the scenario wrote (an error message): it may
    carry one of the scenario's secrets, so the proxy's log gives its length,
    never its words."""
    return field(default=None, metadata={FREE_TEXT: True})


@dataclass(frozen=True)
class NoParams:
    """For kinds that take no parameters."""


class FaultKind:
    """Base of every fault kind. A kind defines only the hooks it needs.

    Sync hooks run inside mitmproxy's hooks: never sleep or block in them. They
    return True when they acted on the flow.
    - on_connect(flow): an HTTP CONNECT (regular proxy mode) for a matched host.
      Only kinds that define it see (and count) CONNECTs.
    - on_request(flow): request headers are in, nothing was sent upstream yet.
    - on_response_headers(flow): upstream answered; nothing sent to the client yet.
    - body_filter(flow): at response headers, return a BodyFilter to transform
      the streamed body (and possibly end the response its own way), or None.
    Optional async ability (None when a kind does not have it):
    - hold_request(flow, lifetime) -> bool: awaited after on_request, before the
      request goes upstream; other flows carry on meanwhile. `lifetime` tells
      when the fault is removed or expires.
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    hold_request: ClassVar[Callable[..., typing.Awaitable[bool]] | None] = None

    def __init__(self, params: Any, *, whole_connections: bool = True):
        self.params = params
        # The fault takes whole connections (Match.whole_connections, and a
        # trigger that does not pick single requests): a kind may then act on
        # a connection, not only on the request.
        self.whole_connections = whole_connections

    def on_connect(self, flow: Any) -> bool:
        return False

    def on_request(self, flow: Any) -> bool:
        return False

    def on_response_headers(self, flow: Any) -> bool:
        return False

    def body_filter(self, flow: Any) -> BodyFilter | None:
        return None

    @property
    def acts_on_connect(self) -> bool:
        return type(self).on_connect is not FaultKind.on_connect
