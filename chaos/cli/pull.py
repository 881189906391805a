"""`chaos pull`: one pull through a running lab (or any mirror and fault proxy)."""

from __future__ import annotations

import json
import sys

import click

from chaos.cli.options import lab_dir_option
from chaos.errors import UsageError
from chaos.vocab.names import ENGINES


@click.command()
@click.argument("image")
@click.option("--mirror", "mirror_url", help="Mirror URL (default: the running lab's mirror).")
@click.option("--login", "user", help="Pull as this Hub user (like `docker login` first).")
@click.option("--password", envvar="CHAOS_PASSWORD", help="Password for --login (default: the lab's, or $CHAOS_PASSWORD).")
@click.option("--proxy", "proxy_url", help="Fault proxy for Hub traffic (default: the running lab's).")
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), help="CA to trust for Hub TLS through the proxy.")
@lab_dir_option
@click.option("--live", is_flag=True, help="Allow pulling from the REAL Docker Hub (no fault proxy).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=3600), default=120.0, show_default=True,
              help="Seconds: the whole pull's budget (every engine keeps its real client's own timeouts inside it).")
@click.option("--engine", type=click.Choice(ENGINES), default="builtin", show_default=True,
              help="Who pulls: the builtin emulation, the Docker daemon (the lab's, else DOCKER_HOST), or skopeo.")
@click.option("--mirror-only", is_flag=True, help="Pull from the mirror alone, with no fallback to Hub: what the mirror itself answers.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pull(image, mirror_url, user, password, proxy_url, ca_file, lab_dir, live, timeout, engine, mirror_only, as_json) -> None:
    """Pull IMAGE like a Docker daemon with registry-mirrors: mirror first, then Hub."""
    from chaos.clients.engines import make_engine
    from chaos.lab.lab import running_lab_state
    from chaos.lab.layout import LabState, lab_password
    from chaos.vocab.reference import parse_reference

    ref = parse_reference(image)
    lab = running_lab_state(lab_dir)
    if lab:
        mirror_url = mirror_url or lab.mirror_url
        proxy_url = proxy_url or lab.proxy_url
        ca_file = ca_file or lab.ca_file
        if user and password is None:
            password = lab_password(lab_dir, user)
    if not proxy_url and not live:
        raise UsageError("no fault proxy: start one with `chaos lab up`, pass --proxy, or --live to use the real Docker Hub")
    if live and not proxy_url:
        click.echo("chaos: LIVE MODE: Hub traffic goes to the real registry-1.docker.io", err=True)
    if user and password is None:
        raise UsageError(f"--login {user}: no password (pass --password or set CHAOS_PASSWORD)")
    if engine == "docker" and not (lab and lab.docker_host) and not live:
        # Another daemon pulls by its own mirrors and proxy: maybe from the real Hub.
        raise UsageError(
            f"--engine docker: the lab in {lab_dir} runs no dockerd (start it with `chaos lab up --engine docker`); "
            "--live uses the daemon at DOCKER_HOST as it is configured"
        )
    where = LabState(root=str(lab_dir), mirror_url=mirror_url or "", proxy_url=proxy_url or "", ca_file=ca_file or "",
                     docker_host=lab.docker_host if lab else "", containerd_address=lab.containerd_address if lab else "",
                     containerd_hosts_dir=lab.containerd_hosts_dir if lab else "")
    puller = make_engine(engine, lab=where, credentials=(user, password) if user else None, timeout=timeout, mirror_only=mirror_only)
    try:
        result = puller.pull(ref)
    finally:
        puller.close()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif result.ok:
        click.echo(f"{ref.familiar}: pulled from {result.served_by}, digest {result.digest}, {result.bytes} bytes in {result.seconds:.2f}s")
    else:
        click.echo(f"{ref.familiar}: {result.error_code}: {result.message}", err=True)
    sys.exit(0 if result.ok else 1)
