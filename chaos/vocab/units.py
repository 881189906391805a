"""Sizes and durations as people write them: `5MB`, `512KiB`, `30s`, `500ms`."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from chaos.errors import quoted

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SECONDS_PER = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


def parse_size(value: int | str) -> int:
    """Bytes from 1024, "1024", "5MB", "512KiB" or "1.5 GB"; ValueError otherwise.

    Decimal units are powers of 1000 (kB, MB, GB, TB), binary units powers of
    1024 (KiB, MiB, GiB, TiB), as `docker images` and `du --si` use them.
    Fractions are truncated to whole bytes.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"invalid size {quoted(value)}: expected a number of bytes or a string like '5MB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {quoted(value)}: must not be negative")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(
            f"invalid size {quoted(value)}: expected a number and an optional unit "
            f"(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. '5MB' or '512KiB'"
        )
    number, unit = match.groups()
    multiplier = _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        raise ValueError(
            f"invalid size {quoted(value)}: unknown unit {quoted(unit)} (expected B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
        )
    try:
        return int(Decimal(number) * multiplier)
    except InvalidOperation:  # pragma: no cover - the regex admits only plain decimals
        raise ValueError(f"invalid size {quoted(value)}") from None


def parse_duration(value: object) -> float:
    """Seconds from 30, 1.5, "30s", "500ms", "2m" or "1h"; ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _SECONDS_PER[match.group(2)]
    raise ValueError(f"expected a duration like 30s, 500ms or 2m, got {quoted(value)}")


def human_bytes(size: int) -> str:
    """A size for people: 3.0 MB, 512 kB, 12 B (decimal units)."""
    if size >= 100_000:
        return f"{size / 1e6:.1f} MB"
    if size >= 1000:
        return f"{size / 1e3:.0f} kB"
    return f"{size} B"
