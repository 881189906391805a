"""Options and helpers several commands share."""

from __future__ import annotations

from pathlib import Path

import click

from chaos.errors import UsageError, quoted

DEFAULT_LAB_DIR = Path(".chaos/lab")

lab_dir_option = click.option(
    "--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR, show_default=True,
    help="Where `chaos lab up` keeps the running lab's state.",
)
var_option = click.option(
    "--var", "var_pairs", multiple=True, metavar="NAME=VALUE",
    help="Set a scenario variable (beats the environment and the file's defaults).",
)
control_option = click.option("--control", "control_url", help="Control API of a fault proxy (default: the running lab's).")


def with_control(func):
    """--control and --lab-dir: which fault proxy a command talks to."""
    return control_option(lab_dir_option(func))


def control_client(control_url: str | None, lab_dir: Path):
    from chaos.lab.layout import LabPaths, LabState
    from chaos.proxy.control_client import ControlClient

    if not control_url:
        state_file = LabPaths(lab_dir).state_file
        if not state_file.exists():
            raise UsageError(f"no lab running in {lab_dir}: pass --control URL of a fault proxy, or `chaos lab up`")
        control_url = LabState.load(state_file).control_url
    return ControlClient(control_base_url(control_url))


def control_base_url(text: str) -> str:
    """--control as a URL: http://HOST:PORT, https://HOST:PORT, or plain HOST:PORT (http)."""
    from urllib.parse import urlsplit

    url = text.strip() if "://" in text else f"http://{text.strip()}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise UsageError(f"--control {quoted(text)}: expected HOST:PORT or http://HOST:PORT of a fault proxy's control API")
    return url.rstrip("/")


def scenario_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
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
    return scenarios


def check_overrides_used(overrides: dict[str, str], scenarios) -> None:
    """A --var no scenario declares or uses is a typo: say so rather than ignore it."""
    known = set().union(*(s.variable_names for s in scenarios)) if scenarios else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"--var {unknown[0]}: no scenario given declares or uses a variable of that name")
