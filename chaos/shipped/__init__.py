"""What hub-chaos ships besides its code, found the same way from a source
checkout and from an installed wheel: the mitmproxy addon script (for
`mitmdump -s`), the shipped scenarios and the scenario JSON Schema.

In the repository they live at the top, where users look for them
(addons/, scenarios/, schemas/); this package reaches them through links,
and a wheel carries copies (pyproject.toml's package data).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from chaos.errors import UsageError


def _here(name: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(name)))


def addon_path() -> Path:
    """The script to give `mitmdump -s` (and mitmweb)."""
    return _here("addons") / "hub_chaos.py"


def scenarios_dir() -> Path:
    return _here("scenarios")


def schema_path() -> Path:
    return _here("schemas") / "scenario.schema.json"


def shipped_scenarios() -> dict[str, Path]:
    """Shipped scenario name (the file's stem) -> its file."""
    return {path.stem: path for path in sorted(scenarios_dir().glob("*.yaml"))}


def shipped_scenario(name: str) -> Path:
    """`hub-down` or `hub-down.yaml` -> the shipped file; UsageError naming the choices."""
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    found = shipped_scenarios()
    if stem not in found:
        raise UsageError(f"{name}: no such file, and no shipped scenario of that name (shipped: {', '.join(found)})")
    return found[stem]
