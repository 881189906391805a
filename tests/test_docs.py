"""The docs are executable: every code block of README.md and docs/*.md is
checked, so a stale example fails CI.

The convention (also in docs/ci.md, "Examples that are tested"):

- every code block is fenced and names its language; an indented block is
  refused, since nothing could tell a command from a diagram;
- yaml parses; a scenario (top-level `name` and `steps`) loads with the real
  loader; a fault (top-level `name` and `kind`, or a list of them) passes the
  fault parser;
- sh/shell/bash blocks run with `bash -euo pipefail` from a folder laid out
  like the repository, this checkout's `chaos` first on the PATH, within
  RUN_TIMEOUT_S, and must exit 0; in a console block the `$ ` lines run;
- python compiles, its imports resolve, it uses no undefined name; json and
  toml parse;
- `<!-- illustrative: WHY -->` on the line right before a fence: the block
  cannot run here (a running lab, a cluster, a real Hub, minutes); it is only
  parsed, never run;
- every relative link points at a file that exists.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from markdown_it import MarkdownIt

from chaos.faults.spec import parse_fault_spec
from chaos.scenario.loader import load_scenario_text

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

MARKER = re.compile(r"<!--\s*illustrative\b")
ILLUSTRATIVE = re.compile(r"<!--\s*illustrative:\s*(?P<why>\S.*?)\s*-->", re.DOTALL)
COMMANDS = {"sh", "shell", "bash"}
CONSOLE = "console"
YAML = {"yaml", "yml"}
DATA = {"json", "toml"}
AS_IS = {"text", "ini", "dockerfile", "diff", "http", "xml", "html", "markdown"}
LANGUAGES = COMMANDS | {CONSOLE, "python"} | YAML | DATA | AS_IS
RUN_TIMEOUT_S = 60
# Not laid out in the sandbox: history, caches and build output of this checkout.
NOT_IN_SANDBOX = {"runs", "build", "ci-artifacts"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence (1-based)
    fenced: bool
    language: str
    text: str
    illustrative: str | None  # why, when the block is marked illustrative

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _tokens(path: Path):
    return MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))


def _blocks(path: Path) -> list[Block]:
    tokens = _tokens(path)
    found = []
    for index, token in enumerate(tokens):
        if token.type not in ("fence", "code_block"):
            continue
        before = tokens[index - 1] if index else None
        why = None
        if before is not None and before.type == "html_block" and before.map[1] == token.map[0]:
            marked = ILLUSTRATIVE.fullmatch(before.content.strip())
            why = marked["why"] if marked else None
        info = token.info.strip().split()
        found.append(Block(path, token.map[0] + 1, token.type == "fence", info[0].lower() if info else "", token.content, why))
    return found


BLOCKS = [block for path in DOCUMENTS for block in _blocks(path)]


def _blocks_of(languages: set[str], *, runnable: bool = False) -> list:
    chosen = [b for b in BLOCKS if b.fenced and b.language in languages and not (runnable and b.illustrative)]
    return [pytest.param(b, id=b.where) for b in chosen]


def test_the_documents_are_found():
    assert ROOT / "README.md" in DOCUMENTS and len(DOCUMENTS) > 1


@pytest.mark.parametrize("block", [pytest.param(b, id=b.where) for b in BLOCKS])
def test_code_block_is_fenced_with_a_known_language(block: Block):
    first = block.text.strip().splitlines()[0] if block.text.strip() else ""
    assert block.fenced, (
        f"{block.where}: an indented code block ({first!r}): fence it with its language "
        f"(```sh, ```yaml, ```text, ...) so tests/test_docs.py can check it")
    assert block.language, f"{block.where}: a fence without a language ({first!r}): say which (```sh, ```yaml, ```text, ...)"
    assert block.language in LANGUAGES, (
        f"{block.where}: unknown language {block.language!r}; known: {', '.join(sorted(LANGUAGES))}")


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in DOCUMENTS])
def test_illustrative_markers_say_why_and_precede_a_fence(path: Path):
    tokens = _tokens(path)
    problems = []
    for index, token in enumerate(tokens):
        if token.type != "html_block" or not MARKER.search(token.content):
            continue
        where = f"{path.relative_to(ROOT)}:{token.map[0] + 1}"
        if not ILLUSTRATIVE.fullmatch(token.content.strip()):
            problems.append(f"{where}: write the marker as <!-- illustrative: why --> alone on its line")
            continue
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if following is None or following.type != "fence" or following.map[0] != token.map[1]:
            problems.append(f"{where}: an illustrative marker must be on the line right before a fenced block")
    assert not problems, "\n".join(problems)


# -- yaml -----------------------------------------------------------------

def _is_scenario(doc) -> bool:
    return isinstance(doc, dict) and "name" in doc and "steps" in doc


def _is_fault(doc) -> bool:
    return isinstance(doc, dict) and "name" in doc and "kind" in doc and "steps" not in doc


@pytest.mark.parametrize("block", _blocks_of(YAML))
def test_yaml_block(block: Block):
    try:
        documents = list(yaml.safe_load_all(block.text))
    except yaml.YAMLError as exc:
        pytest.fail(f"{block.where}: not YAML: {exc}")
    if block.illustrative:
        return
    for doc in documents:
        if _is_scenario(doc):
            assert len(documents) == 1, f"{block.where}: give a scenario a block of its own"
            # The process's environment must not make an example pass: only its own defaults count.
            load_scenario_text(block.text, f"{block.where} (the block's own lines)", environ={})
        elif _is_fault(doc) or (isinstance(doc, list) and doc and all(_is_fault(item) for item in doc)):
            for item in doc if isinstance(doc, list) else [doc]:
                parse_fault_spec(item)


# -- commands -------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A folder laid out like the repository (links to its top-level entries),
    so relative paths in commands work and anything a command writes lands
    here; `chaos` is this interpreter's; home, state and lab folders are fresh."""
    base = tmp_path_factory.mktemp("docs")
    work = base / "work"
    work.mkdir()
    for entry in ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name not in NOT_IN_SANDBOX and not entry.name.endswith(".egg-info"):
            (work / entry.name).symlink_to(entry)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for name in ("chaos", "hub-chaos"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m chaos "$@"\n')
        shim.chmod(0o755)
    home = base / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CHAOS_"))}
    env.update(
        PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        HOME=str(home), XDG_STATE_HOME=str(home / ".local" / "state"), XDG_CONFIG_HOME=str(home / ".config"),
        CHAOS_LAB_DIR=str(base / "lab"), NO_COLOR="1",
    )
    return work, env


def _console_commands(text: str) -> str:
    """The `$ ` lines of a console block (with their `\\` continuations)."""
    commands, continuing = [], False
    for line in text.splitlines():
        if continuing:
            commands.append(line)
        elif line.startswith("$ "):
            commands.append(line[2:])
        else:
            continue
        continuing = line.endswith("\\")
    return "\n".join(commands)


@pytest.mark.parametrize("block", _blocks_of(COMMANDS | {CONSOLE}, runnable=True))
def test_command_block_runs(block: Block, sandbox):
    work, env = sandbox
    script = _console_commands(block.text) if block.language == CONSOLE else block.text
    assert script.strip(), f"{block.where}: no command to run (a console block runs its `$ ` lines)"
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=False, cwd=work, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: still running after {RUN_TIMEOUT_S}s; "
                    "if it needs a lab, a cluster or minutes, mark it <!-- illustrative: why -->")
    assert done.returncode == 0, (
        f"{block.where}: exit {done.returncode}\n--- block\n{script}\n--- stdout (tail)\n{done.stdout[-2000:]}"
        f"\n--- stderr (tail)\n{done.stderr[-2000:]}")


# -- python, json, toml ---------------------------------------------------

def _undefined_names(tree: ast.AST) -> set[str]:
    bound = set(dir(builtins))
    loaded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else loaded).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loaded - bound


def _check_imports(tree: ast.AST, where: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name != "*" and not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        pytest.fail(f"{where}: `from {node.module} import {alias.name}`: no such name")


@pytest.mark.parametrize("block", _blocks_of({"python"}))
def test_python_block(block: Block):
    try:
        tree = ast.parse(block.text, filename=block.where)
    except SyntaxError as exc:
        pytest.fail(f"{block.where}: {exc}")
    if block.illustrative:
        return
    _check_imports(tree, block.where)
    undefined = _undefined_names(tree)
    assert not undefined, f"{block.where}: uses names it never defines or imports: {', '.join(sorted(undefined))}"


@pytest.mark.parametrize("block", _blocks_of(DATA))
def test_data_block_parses(block: Block):
    try:
        json.loads(block.text) if block.language == "json" else tomllib.loads(block.text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        pytest.fail(f"{block.where}: not {block.language}: {exc}")


# -- links ----------------------------------------------------------------

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _links(tokens):
    for token in tokens:
        for child in token.children or ():
            target = {"link_open": "href", "image": "src"}.get(child.type)
            target = child.attrGet(target) if target else None
            if target:
                yield token.map[0] + 1 if token.map else 0, target


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in DOCUMENTS])
def test_relative_links_point_at_files(path: Path):
    broken = []
    for line, target in _links(_tokens(path)):
        if _SCHEME.match(target) or target.startswith("#"):
            continue
        file = unquote(target.split("#", 1)[0])
        if not (path.parent / file).exists():
            broken.append(f"{path.relative_to(ROOT)}:{line}: {target} (no such file)")
    assert not broken, "\n".join(broken)
