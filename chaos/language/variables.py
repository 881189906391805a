"""`${NAME}` and `${NAME:-default}` in scenario files.

Values come from, strongest first: `--var NAME=VALUE`, the environment, the
file's own `variables:` section, then the inline `:-default`. A scalar that is
exactly one `${...}` takes the value's YAML type (`timeout: ${T}` with T=30
is the number 30); inside a longer text it is spliced in as text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from chaos.errors import ScenarioError, quoted
from chaos.language.marked_yaml import MarkedDict, MarkedList, MarkedStr

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BAD_REFERENCE = re.compile(r"\$\{(?![A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME = re.compile(r"password|passwd|secret|token|credential|apikey|privatekey", re.IGNORECASE)
SECRET_WORDS = frozenset({"pass", "pw", "pwd", "key", "auth"})
"""Variable names that hold secrets whatever the file says (REGISTRY_PASSWORD,
DEPLOY_KEY, GH_TOKEN, AUTH): their values never reach a file or a screen."""
REDACTED = "***"


def looks_secret(name: str) -> bool:
    """Whether a variable's name says it holds a secret."""
    return bool(SECRET_NAME.search(name)) or any(word.lower() in SECRET_WORDS for word in re.split(r"[_\W]+", name))


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--var NAME=VALUE` options -> dict; raises ScenarioError-free UsageError text."""
    from chaos.errors import UsageError

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _NAME.match(name):
            raise UsageError(f"--var {quoted(pair)}: expected NAME=VALUE with NAME made of letters, digits and _")
        out[name] = value
    return out


class Variables:
    def __init__(
        self,
        filename: str,
        declared: Mapping[str, Any],
        overrides: Mapping[str, str],
        environ: Mapping[str, str] | None = None,
        *,
        marked_secret: frozenset[str] = frozenset(),
    ):
        self.filename = filename
        self.declared = declared
        self.overrides = overrides
        self.environ = os.environ if environ is None else environ
        self.marked_secret = marked_secret
        self.used: dict[str, str] = {}

    def is_secret(self, name: str) -> bool:
        return name in self.marked_secret or looks_secret(name)

    @property
    def for_the_journal(self) -> dict[str, str]:
        """The values used, secrets replaced."""
        return {name: (REDACTED if self.is_secret(name) else value) for name, value in self.used.items()}

    @property
    def secret_values(self) -> frozenset[str]:
        return frozenset(value for name, value in self.used.items() if self.is_secret(name) and value)

    def _lookup(self, name: str, default: str | None, line: int) -> str:
        if name in self.overrides:
            value = self.overrides[name]
        elif name in self.environ:
            value = self.environ[name]
        elif name in self.declared and self.declared[name] is not None:
            value = str(self.declared[name])
        elif default is not None:
            value = default
        else:
            raise ScenarioError(
                f"{self.filename}:{line}: undefined variable {quoted(name)} "
                f"(set it with --var {name}=VALUE, in the environment, or under variables:)"
            )
        self.used[name] = value
        return value

    def substitute(self, node: Any) -> Any:
        """A copy of the marked tree with every `${...}` replaced."""
        if isinstance(node, MarkedDict):
            out = MarkedDict((key, self.substitute(value)) for key, value in node.items())
            out.line, out.key_lines = node.line, node.key_lines
            return out
        if isinstance(node, MarkedList):
            out = MarkedList(self.substitute(value) for value in node)
            out.line, out.item_lines = node.line, node.item_lines
            return out
        if isinstance(node, MarkedStr) and "${" in node:
            return self._substitute_text(node)
        return node

    def _substitute_text(self, text: MarkedStr) -> Any:
        if _BAD_REFERENCE.search(text):
            raise ScenarioError(f"{self.filename}:{text.line}: malformed variable reference in {quoted(str(text))} (expected ${{NAME}} or ${{NAME:-default}})")
        whole = _REFERENCE.fullmatch(text)
        if whole:
            value = self._lookup(whole.group(1), whole.group(2), text.line)
            try:
                typed = yaml.safe_load(value) if value.strip() else value
            except yaml.YAMLError:
                typed = value
            if isinstance(typed, (bool, int, float)):
                return typed
            marked = MarkedStr(value)
            marked.line = text.line
            return marked
        result = MarkedStr(_REFERENCE.sub(lambda m: self._lookup(m.group(1), m.group(2), text.line), text))
        result.line = text.line
        return result
