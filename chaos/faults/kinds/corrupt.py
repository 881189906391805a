"""corrupt: flip bytes of the body so its digest no longer matches.

Deterministic: the byte at offset `at_byte` of the body is inverted (XOR 0xff),
and with `every_bytes` also every `every_bytes` bytes after it. Without
`at_byte` the middle byte (by Content-Length; byte 0 when there is none) is
used, so a gzip header stays intact and the damage surfaces as a digest
mismatch, the way bit rot on a CDN node does. Lengths and headers are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import http

from chaos.faults.body import BodyFilter, content_length, has_body
from chaos.faults.kind import FaultKind
from chaos.faults.registry import register
from chaos.faults.spec import ParamError


@register
class Corrupt(FaultKind):
    name = "corrupt"

    @dataclass(frozen=True)
    class Params:
        at_byte: int | None = None
        every_bytes: int | None = None

        def __post_init__(self) -> None:
            if self.every_bytes == 0:
                raise ParamError("every_bytes", "must be at least 1")

    def body_filter(self, flow: http.HTTPFlow) -> BodyFilter | None:
        if not has_body(flow):
            return None
        length = content_length(flow)
        first = self.params.at_byte
        if first is None:
            first = length // 2 if length else 0
        if length is not None and first >= length:
            return None  # nothing to flip: do not claim the fault acted
        return FlipBytes(first, self.params.every_bytes)


class FlipBytes(BodyFilter):
    """Invert the byte at offset `first` and, given `every`, each `every` bytes after it.

    Released (the fault ended), it flips no more: bytes already sent stay as sent.
    """

    def __init__(self, first: int, every: int | None):
        self._next: int | None = first
        self._every = every
        self._offset = 0  # body offset of the next chunk's first byte
        self.acted = False

    def release(self) -> None:
        self._next = None

    def __call__(self, chunk: bytes) -> bytes:
        end = self._offset + len(chunk)
        if self._next is None or self._next >= end:
            self._offset = end
            return chunk
        data = bytearray(chunk)
        while self._next is not None and self._next < end:
            data[self._next - self._offset] ^= 0xFF
            self.acted = True
            self._next = self._next + self._every if self._every else None
        self._offset = end
        return bytes(data)
