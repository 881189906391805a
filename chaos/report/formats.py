"""Every report format, by name, rendered from journals alone: what
`chaos run --report FORMAT=FILE` and `chaos report --format` choose from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chaos.journal import Journal
from chaos.report.console import render, scenarios_line
from chaos.report.html import html
from chaos.report.junit import junit_xml
from chaos.report.markdown import markdown


def _console(journals: list[Journal]) -> str:
    text = "\n".join(render(j) for j in journals)
    return text + ("\n" + scenarios_line(journals) if len(journals) > 1 else "") + "\n"


def _junit(journals: list[Journal]) -> str:
    raw = junit_xml(journals).tostring()
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return '<?xml version="1.0" encoding="utf-8"?>\n' + text + "\n"


RENDERERS: dict[str, Callable[[list[Journal]], str]] = {
    "console": _console,
    "junit": _junit,
    "markdown": markdown,
    "html": html,
}
FORMATS = tuple(RENDERERS)


def render_format(name: str, journals: list[Journal]) -> str:
    return RENDERERS[name](journals)


def write_format(name: str, journals: list[Journal], path: Path) -> None:
    """Write the report; a folder that does not exist yet is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_format(name, journals), encoding="utf-8")
    tmp.replace(path)
