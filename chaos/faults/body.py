"""Body filters: how a fault kind acts on a streamed response body.

BodyFilter is what a kind's body_filter hook returns; CutAfter, has_body and
content_length are the pieces the body kinds (reset, stall, truncate, corrupt,
bandwidth) share. hooks.py chains the filters of several faults.
"""

from __future__ import annotations

from typing import Any, ClassVar

from chaos.faults.lifetime import Lifetime


class BodyFilter:
    """Transforms a streamed response body, chunk by chunk.

    __call__ runs synchronously for every chunk (and once with b"" at the end of
    the body): it must never block or sleep. When `ends_response` is True,
    finish() is awaited once the upstream's body is complete and before
    mitmproxy completes the response, so it may hold or kill the flow. close()
    always runs when the flow is over, however it ended.
    """

    ends_response: ClassVar[bool] = False

    def __call__(self, chunk: bytes) -> bytes:
        return chunk

    async def finish(self, flow: Any, lifetime: Lifetime) -> None:
        return None

    def close(self) -> None:
        return None


class CutAfter(BodyFilter):
    """Let the first `after_bytes` of the body through and drop the rest."""

    def __init__(self, after_bytes: int):
        self.remaining = after_bytes

    def __call__(self, chunk: bytes) -> bytes:
        if self.remaining >= len(chunk):
            self.remaining -= len(chunk)
            return chunk
        kept = chunk[: self.remaining]
        self.remaining = 0
        return kept


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
