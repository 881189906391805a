"""`chaos lab up|status|down`: keep a lab running to poke at by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chaos.cli.options import lab_dir_option
from chaos.errors import UsageError
from chaos.vocab.names import ENGINES



@click.group()
def lab() -> None:
    """Keep a lab running to poke at by hand."""


@lab.command("up")
@click.argument("scenario_file", required=False, type=click.Path(path_type=Path))
@lab_dir_option
@click.option("--engine", "engines", multiple=True, type=click.Choice([e for e in ENGINES if e != "builtin"]),
              help="Also serve this real engine (docker: a private dockerd behind the mirror; repeatable).")
def lab_up(scenario_file: Path | None, lab_dir: Path, engines: tuple[str, ...]) -> None:
    """Start a lab (hub seeded from SCENARIO_FILE's lab section, default the shipped hub-down scenario)."""
    from chaos.lab.lab import Lab
    from chaos.lab.layout import LabPaths
    from chaos.scenario.loader import load_scenario

    if LabPaths(lab_dir).state_file.exists():
        raise UsageError(f"a lab is already running in {lab_dir} (`chaos lab down --lab-dir {lab_dir}` first)")
    from chaos.shipped import shipped_scenario

    spec = load_scenario(scenario_file or shipped_scenario("hub-down")).lab
    with Lab(spec, lab_dir, detached=True, engines=set(engines)) as running:
        running.leave_running()
        print_state(running.state)


@lab.command("status")
@lab_dir_option
def lab_status(lab_dir: Path) -> None:
    """Show the running lab's endpoints and whether each component is alive."""
    from chaos.lab.layout import LabPaths, LabState
    from chaos.lab.process import group_alive

    state_file = LabPaths(lab_dir).state_file
    if not state_file.exists():
        click.echo(f"no lab running in {lab_dir}")
        sys.exit(1)
    state = LabState.load(state_file)
    print_state(state)
    dead = [name for name, pgid in state.process_groups.items() if not group_alive(pgid)]
    for name, pgid in state.process_groups.items():
        click.echo(f"  {name:<14} pid {pgid:<8} {'DEAD' if name in dead else 'running'}")
    sys.exit(1 if dead else 0)


@lab.command("down")
@lab_dir_option
def lab_down(lab_dir: Path) -> None:
    """Stop every component of the lab and forget it."""
    from chaos.lab.layout import LabPaths, LabState
    from chaos.lab.process import stop_group

    state_file = LabPaths(lab_dir).state_file
    if not state_file.exists():
        click.echo(f"no lab running in {lab_dir}")
        return
    state = LabState.load(state_file)
    for name, pgid in reversed(list(state.process_groups.items())):
        # dockerd stops its containerd first: give it the grace the lab gives it.
        stop_group(pgid, grace_s=10.0 if name == "dockerd" else 5.0)
        click.echo(f"stopped {name}")
    if state.docker_exec_root or "dockerd" in state.process_groups:
        # dockerd's containerd, mounts, sockets and data root outlive its process group.
        from chaos.lab.dockerd import cleanup

        cleanup(LabPaths(lab_dir).dockerd_data_root, Path(state.docker_exec_root) if state.docker_exec_root else None)
    state_file.unlink()


def print_state(state) -> None:
    click.echo(f"mirror         {state.mirror_url}")
    click.echo(f"fault proxy    {state.proxy_url}  (control {state.control_url})")
    click.echo(f"proxy CA       {state.ca_file}")
    click.echo(f"lab hub        {state.hub_url}  (auth {state.auth_url}, blob CDN {state.cdn_url})")
    if state.push_registry_url:
        click.echo(f"push registry  {state.push_registry_url}")
    if state.docker_host:
        click.echo(f"dockerd        {state.docker_host}  (DOCKER_HOST={state.docker_host} docker pull ...)")
