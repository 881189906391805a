"""refuse: Docker Hub is down; connections to it fail before a single byte.

Regular proxy mode: a new CONNECT to a matched host gets 502 and the connection
closes, which is what any HTTP proxy answers when its upstream refuses. On a
tunnel that was already open when the fault started, and in reverse mode where
there is no CONNECT, the request's connection is killed before any response
byte: a keep-alive connection must not outlive the outage. Over HTTP/2, where
killing a flow resets only its stream, the whole connection is closed too (so
the client's next request opens a new tunnel, and meets the 502): other
requests in flight on it end with it, as they do when Hub goes away. A refuse
narrowed to some requests (endpoints, methods, a repository) or whose trigger
picks single requests (probability, first, every) resets only theirs: it
never takes down requests it did not pick.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from chaos.faults.kind import FaultKind
from chaos.faults.registry import register
from chaos.faults.transports import shutdown_connection

log = logging.getLogger(__name__)


@register
class Refuse(FaultKind):
    name = "refuse"

    def on_connect(self, flow: http.HTTPFlow) -> bool:
        flow.response = http.Response.make(
            502,
            f"hub-chaos: connection to {flow.request.pretty_host} refused (fault injected)\n",
            {"Content-Type": "text/plain", "Connection": "close"},
        )
        return True

    def on_request(self, flow: http.HTTPFlow) -> bool:
        flow.kill()
        if flow.client_conn.alpn == b"h2" and self.whole_connections and not shutdown_connection(flow.client_conn):
            log.info("hub-chaos: refuse: an HTTP/2 connection could not be closed; only its stream was reset")
        return True
