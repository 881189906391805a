"""YAML loading that remembers where every value came from.

PyYAML's SafeLoader already knows each node's line; we keep it by returning
dict/list subclasses that carry the line of the node and of each key or item,
so validation errors can read `hub-down.yaml:14: ...`. (A dozen lines on top
of PyYAML, rather than a second YAML library.)
"""

from __future__ import annotations

from pathlib import Path

import yaml

from chaos.errors import ScenarioError, quoted


class MarkedDict(dict):
    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class MarkedList(list):
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class MarkedStr(str):
    """A text scalar that remembers its line (for `${VAR}` errors)."""

    line: int = 0


class _MarkedLoader(yaml.SafeLoader):
    pass


def _construct_str(loader: _MarkedLoader, node: yaml.ScalarNode) -> MarkedStr:
    value = MarkedStr(loader.construct_scalar(node))
    value.line = node.start_mark.line + 1
    return value


def _construct_mapping(loader: _MarkedLoader, node: yaml.MappingNode) -> MarkedDict:
    result = MarkedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise ScenarioError(f"{{file}}:{key_node.start_mark.line + 1}: mapping keys must be plain words")
        if key in result:
            raise ScenarioError(f"{{file}}:{key_node.start_mark.line + 1}: duplicate key {quoted(key)}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _MarkedLoader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_MarkedLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)


MAX_FILE_BYTES = 1 << 20
"""A scenario is a page or two of YAML: a bigger file is a mistake, or an attack."""
MAX_EXPANDED_NODES = 50_000
"""Nodes after following every alias: anchors are welcome, a "billion laughs" is not."""


def load_marked(path: Path):
    """Parse a YAML file; every problem is a ScenarioError starting with file:line."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES and path.is_file():
            raise ScenarioError(f"{path}: {size} bytes; scenario files are limited to {MAX_FILE_BYTES // 1024} KiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a directory, expected a scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return load_marked_text(text, str(path))


def load_marked_text(text: str, filename: str):
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(f"{filename}: {len(text)} characters; scenario files are limited to {MAX_FILE_BYTES // 1024} KiB")
    try:
        return _load(text, filename)
    except ScenarioError as exc:
        raise ScenarioError(exc.message.replace("{file}", filename)) from None
    except yaml.reader.ReaderError as exc:
        # The reader checks the whole text first and knows only a character position.
        line = text.count("\n", 0, exc.position) + 1
        raise ScenarioError(f"{filename}:{line}: unacceptable character #x{exc.character:04x} (control characters are not allowed in YAML)") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ScenarioError(f"{filename}:{line}: YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{filename}:1: YAML error: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{filename}:1: YAML nests too deeply") from None


def _load(text: str, filename: str):
    """Compose the node graph, refuse aliases that expand too far, then construct."""
    loader = _MarkedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, filename)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, filename: str) -> None:
    """Count the nodes the document has once every alias is followed (an alias
    re-uses its anchor's node object); refuse a recursive alias or too many."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ScenarioError(f"{filename}:{node.start_mark.line + 1}: recursive alias (a node that contains itself)")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise ScenarioError(
                f"{filename}:{node.start_mark.line + 1}: aliases expand this document beyond {MAX_EXPANDED_NODES} values"
            )
        sizes[key] = total
        return total

    size(root)
