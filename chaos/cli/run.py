"""`chaos run`, `chaos validate`, `chaos schema` and `chaos report`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chaos.cli.options import load_all, report_option, var_option, write_reports
from chaos.errors import UsageError
from chaos.vocab.names import ENGINES

RUNS = Path("runs")


@click.command()
@click.argument("scenario_paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--list", "list_shipped", is_flag=True, help="List the shipped scenarios (run one by its name: `chaos run hub-down`).")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Folder for journal.json and component logs (default: runs/<time>-<scenario>).")
@click.option("--tag", "tags", multiple=True, help="Only scenarios with this tag (repeatable: any of them).")
@var_option
@click.option("--engine", type=click.Choice(ENGINES), default="builtin", show_default=True,
              help="Client that pulls and pushes: the builtin emulation of a Docker daemon, a real dockerd, skopeo, or containerd as a Kubernetes node (steps may choose their own).")
@click.option("--keep-lab", is_flag=True, help="Leave the lab running after the run (its folder is the run folder's lab/: `chaos lab down --lab-dir RUN_DIR/lab`).")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; start nothing.")
@report_option
def run(scenario_paths, list_shipped, run_dir, tags, var_pairs, engine, keep_lab, dry_run, reports) -> None:
    """Run scenario files (or every scenario in a folder) and judge them.

    A name that is no file, like `hub-down` or `hub-down.yaml`, runs the
    shipped scenario of that name (`--list` shows them). Each scenario gets
    its own embedded lab (or its target), its own run folder and
    journal.json. Exit 0 when every expectation held, 1 when one failed.
    """
    from chaos.cli.plan import plan
    from chaos.report.console import scenarios_line

    if list_shipped:
        _list_shipped()
        return
    if not scenario_paths:
        raise UsageError("give scenario files, folders or shipped scenario names (chaos run --list shows them)")

    scenarios = load_all(scenario_paths, var_pairs)  # any bad file: exit 2 before anything starts
    if tags:
        scenarios = [s for s in scenarios if set(tags) & set(s.tags)]
        if not scenarios:
            raise UsageError(f"no scenario has any of the tags: {', '.join(tags)}")
    if keep_lab and len(scenarios) > 1:
        raise UsageError("--keep-lab: give a single scenario (each scenario has its own lab)")
    if dry_run:
        for scenario in scenarios:
            click.echo(plan(scenario))
        return
    from chaos.runner.run_folders import mark_killed_runs, new_run_folder

    runs_root = RUNS if run_dir is None else (run_dir.parent if len(scenarios) == 1 else run_dir)
    for killed in mark_killed_runs(runs_root):
        click.echo(f"chaos: an earlier run was killed before it ended: {killed} (now marked killed)", err=True)
    folders = [new_run_folder(RUNS, s.name) if run_dir is None else (run_dir if len(scenarios) == 1 else run_dir / s.name)
               for s in scenarios]
    for folder in folders:
        if (folder / "journal.json").exists():
            raise UsageError(f"--run-dir {folder}: holds an earlier run (its journal.json); give a new folder")
    journals = []
    try:
        for scenario, folder in zip(scenarios, folders):
            journals.append(_run_one(scenario, folder, engine, keep_lab))
    finally:
        # What ran is reported even when a later scenario could not (exit 3) or Ctrl-C.
        write_reports(journals, reports)
    if len(journals) > 1:
        click.echo(scenarios_line(journals))
    sys.exit(0 if all(j.passed for j in journals) else 1)


def _list_shipped() -> None:
    from chaos.scenario.loader import load_scenario
    from chaos.shipped import shipped_scenarios

    for name, path in shipped_scenarios().items():
        scenario = load_scenario(path, environ={})
        summary = " ".join(scenario.description.split())
        click.echo(f"{name:<32} {summary[:100] + ('...' if len(summary) > 100 else '')}")


def _run_one(scenario, run_dir: Path, engine: str, keep_lab: bool):
    from chaos.lab.lab import Lab
    from chaos.lab.target import state_for_target
    from chaos.runner.environment import RunEnvironment

    run_dir.mkdir(parents=True, exist_ok=True)
    engines = _engines_used(scenario, engine)
    if scenario.target:
        if "docker" in engines and not scenario.target.live:
            raise UsageError(f"{scenario.path}: --engine docker against a target: the Docker daemon falls back to Hub as it "
                             "is configured, maybe the real one; set target.live: true to allow that")
        state = state_for_target(scenario.target)
        _preflight_engines(engines, state)
        return _execute(scenario, RunEnvironment.real(state), run_dir, engine, scenario.target.describe())
    lab = Lab(scenario.lab, run_dir / "lab", detached=keep_lab, engines=engines - {"builtin"})
    try:
        with lab:
            journal = _execute(scenario, RunEnvironment.real(lab.state, lab), run_dir, engine, "the embedded lab")
            if keep_lab:
                lab.leave_running()
    except KeyboardInterrupt:
        if lab.stopped:
            click.echo("chaos: lab stopped, faults cleared", err=True)
        raise
    if keep_lab:
        click.echo(f"lab left running: chaos lab status --lab-dir {run_dir / 'lab'}  /  chaos lab down --lab-dir {run_dir / 'lab'}")
    return journal


def _execute(scenario, env, run_dir: Path, engine: str, where: str):
    from chaos.report.console import header, name_width, step_line, summary_line
    from chaos.runner.runner import Runner

    runner = Runner(scenario, env, run_dir, engine=engine, where=where)
    width, total = name_width(runner.journal), runner.total_steps
    runner.on_step_end = lambda record: click.echo(step_line(record, total, width))
    click.echo(header(runner.journal))
    try:
        journal = runner.run()
    except KeyboardInterrupt:
        click.echo(summary_line(runner.journal))
        raise
    click.echo(summary_line(journal))
    return journal


def _engines_used(scenario, run_engine: str) -> set[str]:
    from chaos.steps.registry import kinds

    return {run_engine} | {name for step in scenario.all_steps() for name in kinds()[step.kind].engines(step.action)}


def _preflight_engines(engines: set[str], state) -> None:
    """Against a target no lab starts an engine: say now, before any step, when one cannot run (exit 3)."""
    from chaos.clients.engines import make_engine

    for name in sorted(engines - {"builtin"}):
        make_engine(name, lab=state, credentials=None, timeout=10.0).close()


@click.command()
@click.argument("scenario_paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@var_option
def validate(scenario_paths, var_pairs) -> None:
    """Check scenario files (or folders of them) without starting anything.

    Every file is reported, ok or with its error; exit 2 if any is bad."""
    from chaos.cli.options import check_overrides_used, scenario_files
    from chaos.cli.plan import plural
    from chaos.errors import ScenarioError
    from chaos.language.variables import parse_overrides
    from chaos.scenario.loader import load_scenario

    overrides = parse_overrides(var_pairs)
    scenarios, bad = [], 0
    for path in scenario_files(scenario_paths):
        try:
            scenario = load_scenario(path, overrides=overrides)
        except ScenarioError as exc:
            bad += 1
            click.echo(f"chaos: error: {exc}", err=True)
            continue
        scenarios.append(scenario)
        click.echo(f"{scenario.path}: ok ({scenario.name}, {plural(len(scenario.all_steps()), 'step')}, "
                   f"{plural(len(scenario.lab.images), 'image')})")
    if not bad:
        check_overrides_used(overrides, scenarios)
    if bad:
        total = len(scenarios) + bad
        raise UsageError(f"{bad} of {total} scenario file{'s' if total != 1 else ''} {'is' if bad == 1 else 'are'} not valid")


@click.command()
def schema() -> None:
    """Print the JSON Schema of scenario files (for editors: VS Code's YAML extension)."""
    from chaos.scenario.schema import schema_json

    click.echo(schema_json(), nl=False)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(("console", "junit", "markdown", "html")), default="console", show_default=True,
              help="What to print.")
@report_option
def report(runs, fmt, reports) -> None:
    """Report earlier runs from their journals alone.

    RUNS are run folders (or folders of them, as `chaos run DIR --run-dir`
    writes) or journal.json files. Prints the report in --format; --report
    writes more. Exit 0 when every run passed, 1 otherwise.
    """
    from chaos.journal import Journal, JournalError
    from chaos.report.formats import render_format
    from chaos.runner.run_folders import settle_if_killed

    journals = []
    for path in _journal_files(runs):
        try:
            journals.append(settle_if_killed(path, Journal.load(path)))
        except JournalError as exc:
            raise UsageError(f"{path}: {exc}") from None
    click.echo(render_format(fmt, journals), nl=False)
    write_reports(journals, reports)
    sys.exit(0 if all(j.passed for j in journals) else 1)


def _journal_files(paths: tuple[Path, ...]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif (path / "journal.json").is_file():
            found.append(path / "journal.json")
        elif path.is_dir() and (inner := sorted(path.glob("*/journal.json"))):
            found.extend(inner)
        else:
            raise UsageError(f"{path}: no journal.json (give a run folder or a journal file)")
    return found
