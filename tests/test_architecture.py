"""The house's shape, as a contract CI checks: the layers of pyproject.toml's
[tool.importlinter] (a lower package never imports a higher one, counting
imports inside functions and under TYPE_CHECKING), reports that read only
the journal, and no import cycle between packages or modules."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def _contracts() -> list[dict]:
    return tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]


def test_the_import_contracts_hold():
    # In a process of its own: import-linter's command reconfigures logging.
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(CONFIG), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_every_part_of_chaos_sits_in_a_layer():
    # A new package left out of the layers would escape the contract silently.
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    parts = {f"chaos.{p.stem}" for p in (ROOT / "chaos").iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and not p.stem.startswith("__"))}
    assert parts == placed


def test_cycles_are_checked_for_the_whole_package():
    acyclic = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    assert acyclic and acyclic[0]["ancestors"] == ["chaos"]
