"""Body filters: how a fault kind acts on a streamed response body.

BodyFilter is what a kind's body_filter hook returns; CutAfter, has_body and
content_length are the pieces the body kinds (reset, stall, truncate, corrupt,
bandwidth) share. hooks.py chains the filters of several faults.
"""

from __future__ import annotations

from typing import Any

from chaos.faults.lifetime import Lifetime


class BodyFilter:
    """Transforms a streamed response body, chunk by chunk.

    __call__ runs synchronously for every chunk (and once with b"" at the end of
    the body): it must never block or sleep. When `ends_response` is True,
    finish() is awaited once the upstream's body is complete and before
    mitmproxy completes the response, so it may hold or kill the flow. close()
    always runs when the flow is over, however it ended.

    release() runs when the fault ends (removed, replaced, reset, expired) while
    its response is still streaming: the filter must stop acting on what is
    left (stop pacing, stop cutting, stop flipping). `acted` says whether it had
    changed anything by then; a filter released before it acted is not counted
    as applied (hooks.FilterChain), so counters say what reached the client.
    """

    ends_response: bool = False
    acted: bool = True

    def __call__(self, chunk: bytes) -> bytes:
        return chunk

    async def finish(self, flow: Any, lifetime: Lifetime) -> None:
        return None

    def release(self) -> None:
        return None

    def close(self) -> None:
        return None


class CutAfter(BodyFilter):
    """Let the first `after_bytes` of the body through and drop the rest.

    Subclasses set `cuts` to end the response their way after the body
    (ends_response); released before it dropped a byte, the filter lets the
    whole body through and ends nothing, as if the fault had never fired.
    """

    cuts = False

    def __init__(self, after_bytes: int):
        self.remaining = after_bytes
        self.acted = False  # nothing dropped yet
        self._released = False

    @property
    def ends_response(self) -> bool:  # type: ignore[override]
        return self.cuts and not (self._released and not self.acted)

    def __call__(self, chunk: bytes) -> bytes:
        if self.remaining >= len(chunk) or (self._released and not self.acted):
            self.remaining = max(self.remaining - len(chunk), 0)
            return chunk
        kept = chunk[: self.remaining]
        self.remaining = 0
        self.acted = True
        return kept

    def release(self) -> None:
        self._released = True


def has_body(flow: Any) -> bool:
    """Whether the response carries body bytes a body filter could act on."""
    response = flow.response
    if flow.request.method == "HEAD" or response.status_code in (204, 304) or response.status_code < 200:
        return False
    return response.headers.get("content-length", "").strip() != "0"


def content_length(flow: Any) -> int | None:
    """The response's Content-Length, or None when absent or malformed."""
    text = flow.response.headers.get("content-length", "").strip()
    return int(text) if text.isdigit() else None
