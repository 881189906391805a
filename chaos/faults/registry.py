"""Fault kinds by name. Each kind's module registers itself with `@register`.

Kept free of imports from chaos.faults.base so kind modules can import both
without a cycle; the built-in modules are imported on first lookup.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Mapping

# Modules whose import registers the built-in kinds (issue 3 appends here).
_BUILTIN_MODULES = ("chaos.faults.refuse", "chaos.faults.reset")

_KINDS: dict[str, type] = {}
_loaded = False


def register(kind_class: type) -> type:
    """Class decorator: make `kind_class` available under `kind_class.name`."""
    name = getattr(kind_class, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind_class.__qualname__} needs a class attribute `name`")
    existing = _KINDS.get(name)
    if existing is not None and existing is not kind_class:
        raise ValueError(
            f"fault kind {name!r} registered twice: "
            f"{existing.__qualname__} and {kind_class.__qualname__}"
        )
    _KINDS[name] = kind_class
    return kind_class


def kinds() -> Mapping[str, type]:
    """Every registered kind by name (read-only view)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
    return MappingProxyType(_KINDS)
