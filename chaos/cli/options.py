"""Options and helpers several commands share."""

from __future__ import annotations

import os
from pathlib import Path

import click

from chaos.errors import UsageError, quoted
from chaos.journal import Redactor

PROGRESS_REDACTOR = Redactor()
"""Masks the secrets of the scenarios being run in progress lines (chaos.cli.app)."""


def default_lab_dir() -> Path:
    """Where `chaos lab up` keeps a lab unless told otherwise: one per user,
    so every folder's `chaos fault`, `tap`, `pull` and `lab down` find it."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "hub-chaos" / "lab"


lab_dir_option = click.option(
    "--lab-dir", type=click.Path(path_type=Path), envvar="CHAOS_LAB_DIR", default=default_lab_dir, show_default="$CHAOS_LAB_DIR, else ~/.local/state/hub-chaos/lab",
    help="The running lab's folder (where `chaos lab up` keeps its state): this option, else $CHAOS_LAB_DIR, else one per user.",
)
var_option = click.option(
    "--var", "var_pairs", multiple=True, metavar="NAME=VALUE",
    help="Set a scenario variable (beats the environment and the file's defaults).",
)
control_option = click.option(
    "--control", "control_url", help="Control API of a fault proxy, HOST:PORT or http://HOST:PORT (default: the running lab's).")


class ReportTarget(click.ParamType):
    """FORMAT=FILE for --report: one of chaos.report.formats.FORMATS and where to write it."""

    name = "FORMAT=FILE"

    def convert(self, value, param, ctx):
        from chaos.report.formats import FORMATS

        if isinstance(value, tuple):
            return value
        fmt, sep, file = str(value).partition("=")
        if not sep or not file or fmt not in FORMATS:
            self.fail(f"{quoted(value)}: expected FORMAT=FILE with FORMAT one of {', '.join(FORMATS)}", param, ctx)
        return fmt, Path(file)


report_option = click.option(
    "--report", "reports", multiple=True, type=ReportTarget(),
    help="Also write a report: junit=FILE, markdown=FILE, html=FILE or console=FILE (repeatable). "
         "With $GITHUB_STEP_SUMMARY set, the Markdown summary is appended to it too.",
)


def write_reports(journals, reports) -> None:
    """The --report files, and the Markdown summary for a GitHub Actions job."""
    import os

    from chaos.report.formats import render_format, write_format

    for fmt, path in reports:
        write_format(fmt, journals, path)
        click.echo(f"report: {fmt} {path}", err=True)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and journals:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(render_format("markdown", journals) + "\n")


token_option = click.option(
    "--control-token-file", "token_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), envvar="CHAOS_CONTROL_TOKEN_FILE",
    help="File holding the control API's token, for a fault proxy started with hub_control_token_file (or $CHAOS_CONTROL_TOKEN_FILE).")


def with_control(func):
    """--control, --control-token-file and --lab-dir: which fault proxy a command talks to."""
    return control_option(token_option(lab_dir_option(func)))


def control_client(control_url: str | None, lab_dir: Path, token_file: Path | None = None):
    from chaos.lab.lab import running_lab_state
    from chaos.proxy.control_client import ControlClient

    if not control_url:
        state = running_lab_state(lab_dir)
        if state is None:
            raise UsageError(f"no lab running in {lab_dir}: pass --control HOST:PORT of a fault proxy, or `chaos lab up`")
        control_url = state.control_url
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--control-token-file {token_file}: cannot read: {exc.strerror}") from None
    return ControlClient(control_url, token=token)


def scenario_files(paths: tuple[Path, ...]) -> list[Path]:
    """Files, every scenario in a folder, or a shipped scenario by name
    (`hub-down`, `hub-down.yaml`) when no such file or folder exists."""
    from chaos.shipped import shipped_scenario

    files: list[Path] = []
    for path in paths:
        if not path.exists() and len(path.parts) == 1:
            files.append(shipped_scenario(path.name))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise UsageError(f"{path}: no scenario files (*.yaml, *.yml) in this folder")
            files.extend(found)
        else:
            files.append(path)  # a missing file is reported by the loader, with its name
    return files


def load_all(paths: tuple[Path, ...], var_pairs: tuple[str, ...]):
    """Every scenario file, parsed; the first bad one raises (exit 2)."""
    from chaos.language.variables import parse_overrides
    from chaos.scenario.loader import load_scenario

    overrides = parse_overrides(var_pairs)
    scenarios = [load_scenario(path, overrides=overrides) for path in scenario_files(paths)]
    check_overrides_used(overrides, scenarios)
    PROGRESS_REDACTOR.secrets = Redactor(frozenset().union(*(s.secrets for s in scenarios))).secrets
    return scenarios


def check_overrides_used(overrides: dict[str, str], scenarios) -> None:
    """A --var no scenario declares or uses is a typo: say so rather than ignore it."""
    known = set().union(*(s.variable_names for s in scenarios)) if scenarios else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"--var {unknown[0]}: no scenario given declares or uses a variable of that name")
