"""How the lab's own HTTP services (auth, CDN) run as processes: until SIGTERM
or Ctrl-C, closing their socket and log on the way out."""

from __future__ import annotations

import signal
import sys
from socketserver import BaseServer
from typing import TextIO


def serve_until_stopped(server: BaseServer, log_stream: TextIO | None = None) -> None:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds serve_forever() so the socket and log close cleanly

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if log_stream is not None and log_stream is not sys.stderr:
            log_stream.close()
