"""Fault kinds by name. Each kind's module registers itself with `@register`.

The built-in kinds are found, not listed: on first lookup every module of the
chaos.faults.kinds package is imported, so a new kind is one new file there. A module that fails to import is skipped and its
error kept in `load_errors()` (and logged): one broken kind must not take the
others down.

Kept free of imports from the rest of chaos.faults so kind modules (and spec.py,
faultset.py) can import it without a cycle.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

log = logging.getLogger(__name__)

PACKAGE = "chaos.faults.kinds"

_KINDS: dict[str, type] = {}
_ERRORS: dict[str, str] = {}
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
        _import_builtin_kinds()
    return MappingProxyType(_KINDS)


def load_errors() -> Mapping[str, str]:
    """Modules of the package that failed to import, with their error."""
    kinds()
    return MappingProxyType(_ERRORS)


def _import_builtin_kinds() -> None:
    package = importlib.import_module(PACKAGE)
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        qualified = f"{PACKAGE}.{module.name}"
        try:
            importlib.import_module(qualified)
        except Exception as err:  # noqa: BLE001 - any failure of one kind is that kind's problem
            _ERRORS[qualified] = f"{type(err).__name__}: {err}"
            log.error(f"hub-chaos: fault kinds in {qualified} unavailable: {err}")
