"""`chaos lab up|status|down`: keep a lab running to poke at by hand, or stand
up just the lab hub and fault proxy for your own mirror."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaos.cli.options import lab_dir_option
from chaos.errors import EnvironmentProblem
from chaos.vocab.names import ENGINES


@click.group()
def lab() -> None:
    """Keep a lab running to poke at by hand."""


@lab.command("up")
@click.argument("scenario_file", required=False, type=click.Path(path_type=Path))
@lab_dir_option
@click.option("--engine", "engines", multiple=True, type=click.Choice([e for e in ENGINES if e != "builtin"]),
              help="Also serve this real engine (docker: a private dockerd; containerd: a private containerd; repeatable).")
@click.option("--no-mirror", is_flag=True,
              help="Start only the lab hub and the fault proxy, for your own mirror: print the settings it needs.")
@click.option("--registry-binary", type=click.Path(path_type=Path),
              help="The distribution registry program (default: $CHAOS_REGISTRY_BINARY, else docker-registry, else registry).")
@click.option("--json", "as_json", is_flag=True, help="Print the lab's addresses (and, with --no-mirror, the mirror's settings) as JSON.")
def lab_up(scenario_file: Path | None, lab_dir: Path, engines: tuple[str, ...], no_mirror: bool,
           registry_binary: Path | None, as_json: bool) -> None:
    """Start a lab (hub seeded from SCENARIO_FILE's lab section, default the shipped hub-down scenario).

    With --no-mirror, point your own mirror at it with the printed settings:
    its proxy.remoteurl stays https://registry-1.docker.io; it reaches Hub
    through HTTPS_PROXY and trusts the proxy's CA."""
    from chaos.lab.lab import Lab, external_mirror_settings
    from chaos.scenario.loader import load_scenario
    from chaos.shipped import shipped_scenario

    spec = load_scenario(scenario_file or shipped_scenario("hub-down")).lab
    with Lab(spec, lab_dir, detached=True, engines=set(engines), mirror=not no_mirror,
             registry_binary=str(registry_binary) if registry_binary else None) as running:
        running.leave_running()
        state = running.state
        settings = external_mirror_settings(state) if no_mirror else None
        if as_json:
            out = {"lab_dir": str(lab_dir), "state": _public(state)}
            if settings:
                out["mirror_settings"] = settings.to_dict()
            click.echo(json.dumps(out, indent=2))
            return
        print_state(state)
        if settings:
            click.echo("\nfor your mirror (distribution: proxy.remoteurl as in production):")
            click.echo(f"  proxy.remoteurl   {settings.remote_url}")
            click.echo(f"  HTTPS_PROXY       {settings.https_proxy}")
            click.echo(f"  SSL_CERT_FILE     {settings.ca_file}")
            click.echo(f"  lab users         {settings.users_file}  (their passwords, for proxy.username/password)")
            click.echo("for a fault proxy of your own in front of this hub (mitmdump -s \"$(chaos addon)\"):")
            click.echo(f"  --set hub_routes={settings.hub_routes}")
            click.echo(f"  --set hub_cdn_secret_file={settings.cdn_secret_file}  (blob GETs redirect to {settings.cdn_host})")
            click.echo(f"  --set ssl_verify_upstream_trusted_ca={settings.upstream_ca_file}  (the lab's CDN serves TLS)")
        click.echo(f"\nstop it with: chaos lab down --lab-dir {lab_dir}")


@lab.command("status")
@lab_dir_option
def lab_status(lab_dir: Path) -> None:
    """Show the running lab's endpoints and whether each component is alive
    (a recorded process id is checked to still be the lab's own process)."""
    from chaos.lab.lab import recorded_lab

    recorded = recorded_lab(lab_dir)
    if recorded is None or not recorded.running:
        click.echo(f"no lab running in {lab_dir}" + (" (it was killed; `chaos lab down` removes what it left)"
                                                      if recorded is not None and recorded.stale else ""))
        sys.exit(1)
    print_state(recorded.state)
    for component in recorded.components:
        if component.ours:
            what = "running"
        elif component.alive:
            what = f"DEAD (pid {component.pid} is now another process's)"
        else:
            what = "DEAD"
        click.echo(f"  {component.name:<14} pid {component.pid:<8} {what}")
    sys.exit(0 if all(c.ours for c in recorded.components) else 1)


@lab.command("down")
@lab_dir_option
def lab_down(lab_dir: Path) -> None:
    """Stop every component of the lab and remove what it left (its scratch
    folder, mounts and secrets); a process id that now names another process
    is left alone."""
    from chaos.lab.lab import stop_recorded

    report = stop_recorded(lab_dir)
    if report is None:
        click.echo(f"no lab recorded in {lab_dir}")
        return
    for name in report.stopped:
        click.echo(f"stopped {name}")
    for name in report.already_gone:
        click.echo(f"{name}: already gone")
    for name in report.not_ours:
        click.echo(f"{name}: its recorded process id now names another process: left alone")
    for what in report.removed:
        click.echo(f"removed {what}")
    if not report.complete:
        raise EnvironmentProblem(
            "the lab did not stop completely: "
            + "; ".join([f"{name} still runs after SIGKILL" for name in report.not_stopped] + [f"could not remove {what}" for what in report.left])
        )


def _public(state) -> dict:
    return {k: v for k, v in vars(state).items() if k not in ("users",)}


def print_state(state) -> None:
    if state.mirror_url:
        click.echo(f"mirror         {state.mirror_url}")
    click.echo(f"fault proxy    {state.proxy_url}  (control {state.control_url})")
    for origin, url in sorted(state.proxy_urls.items()):
        if url != state.proxy_url:
            click.echo(f"  listener     {origin:<14} {url}")
    click.echo(f"proxy CA       {state.ca_file}")
    click.echo(f"lab hub        {state.hub_url}  (auth {state.auth_url}, blob CDN {state.cdn_url})")
    if state.push_registry_url:
        click.echo(f"push registry  {state.push_registry_url}")
    if state.docker_host:
        click.echo(f"dockerd        {state.docker_host}  (DOCKER_HOST={state.docker_host} docker pull ...)")
    if state.containerd_address:
        click.echo(f"containerd     {state.containerd_address}  (hosts.toml in {state.containerd_hosts_dir})")
    for key in state.mirror_overrides:
        click.echo(f"mirror config  overridden by the lab: {key}")
