"""Step kinds by name. Each kind's module registers itself with `@register`.

The built-in kinds are found, not listed: on first lookup every module of
chaos.steps.kinds is imported, so a new kind is one new file there. Unlike
fault kinds (which a running proxy must survive without), a step kind that
fails to import is a bug: the error propagates.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.steps.kind import StepKind

PACKAGE = "chaos.steps.kinds"

_KINDS: dict[str, StepKind] = {}
_loaded = False


def register(kind_class: type) -> type:
    """Class decorator: make an instance of `kind_class` available under its `name`."""
    name = getattr(kind_class, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind_class.__qualname__} needs a class attribute `name`")
    existing = _KINDS.get(name)
    if existing is not None and type(existing) is not kind_class:
        raise ValueError(f"step kind {name!r} registered twice: {type(existing).__qualname__} and {kind_class.__qualname__}")
    _KINDS[name] = kind_class()
    return kind_class


def kinds() -> Mapping[str, StepKind]:
    """Every registered kind by name, in alphabetical order (whatever order
    their modules happened to be imported in)."""
    global _loaded
    if not _loaded:
        _loaded = True
        package = importlib.import_module(PACKAGE)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not module.name.startswith("_"):
                importlib.import_module(f"{PACKAGE}.{module.name}")
    return MappingProxyType(dict(sorted(_KINDS.items())))

