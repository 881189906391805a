"""`chaos fault ...`, `chaos tap` and `chaos proxy-options`: the fault proxy
(the lab's, or any with --control) driven by hand."""

from __future__ import annotations

import json
import time

import click

from chaos.cli.options import control_client, with_control
from chaos.errors import UsageError


@click.group()
def fault() -> None:
    """Switch faults on and off in a running fault proxy."""


@fault.command("list")
@with_control
def fault_list(control_url, lab_dir) -> None:
    """List active faults."""
    faults = control_client(control_url, lab_dir).list()
    if not faults:
        click.echo("no active faults")
    for item in faults:
        left = max(0.0, item.get("expires_at", 0) - time.time())
        click.echo(f"{item['name']:<20} {item['kind']:<12} params={json.dumps(item.get('params', {}))} "
                   f"match={json.dumps({k: v for k, v in item.get('match', {}).items() if v})} expires in {left:.0f}s")


def _key_values(pairs: tuple[str, ...], option: str) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)  # numbers and booleans keep their type
        except json.JSONDecodeError:
            out[key] = value
    return out


@fault.command("add")
@click.argument("name")
@click.option("--kind", "--mode", "kind", required=True, help="Fault kind, e.g. refuse or reset.")
@click.option("-p", "--param", "params", multiple=True, help="Kind parameter KEY=VALUE (repeatable).")
@click.option("--role", "roles", multiple=True, help="Only this role: registry, auth or cdn (repeatable).")
@click.option("--host", "hosts", multiple=True, help="Only this host name or glob (repeatable).")
@click.option("--endpoint", "endpoints", multiple=True, help="Only this endpoint kind, e.g. manifest (repeatable).")
@click.option("--method", "methods", multiple=True, help="Only this HTTP method (repeatable).")
@click.option("--repository", help="Only repositories matching this glob, e.g. 'library/*'.")
@click.option("--ttl", "ttl_s", type=float, help="Seconds until the fault clears itself (default 300).")
@with_control
def fault_add(name, kind, params, roles, hosts, endpoints, methods, repository, ttl_s, control_url, lab_dir) -> None:
    """Switch on fault NAME."""
    match = {k: list(v) for k, v in (("roles", roles), ("hosts", hosts), ("endpoints", endpoints),
                                      ("methods", [m.upper() for m in methods])) if v}
    if repository:
        match["repository"] = repository
    spec = {"name": name, "kind": kind, "params": _key_values(params, "--param"), "match": match}
    if ttl_s is not None:
        spec["ttl_s"] = ttl_s
    stored = control_client(control_url, lab_dir).add(spec)
    click.echo(f"fault {stored['name']} ({stored['kind']}) on, expires in {stored['expires_at'] - time.time():.0f}s")


@fault.command("rm")
@click.argument("names", nargs=-1, required=True)
@with_control
def fault_rm(names, control_url, lab_dir) -> None:
    """Switch off the named faults."""
    control = control_client(control_url, lab_dir)
    for name in names:
        control.remove(name)
        click.echo(f"fault {name} off")


@fault.command("reset")
@with_control
def fault_reset(control_url, lab_dir) -> None:
    """Switch off every fault."""
    removed = control_client(control_url, lab_dir).reset()
    click.echo(f"{removed} fault(s) off")


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this event id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_control
def tap(follow, after, as_json, control_url, lab_dir) -> None:
    """Print the upstream requests the fault proxy saw (the event tap)."""
    control = control_client(control_url, lab_dir)
    cursor = after
    while True:
        page = control.events(after=cursor, limit=1000)
        if page.dropped:
            click.echo(f"({page.dropped} events dropped: the tap's ring overflowed)", err=True)
        for event in page.events:
            if as_json:
                click.echo(json.dumps(event))
            else:
                click.echo(f"{event['id']:>6} {event.get('method') or '-':<7} {event.get('host') or '-':<24} "
                           f"{event.get('kind') or '-':<9} {event.get('repository') or '-':<24} "
                           f"{event.get('status') or '-':<4} {event.get('bytes') or 0:>10}B "
                           f"{event.get('fault') or ''}")
        cursor = page.next
        if not follow:
            return
        if not page.events:
            time.sleep(0.5)


@click.command("proxy-options")
def proxy_options() -> None:
    """Print the fault proxy addon's mitmdump options with their help.

    (`mitmdump --options` cannot list them: mitmproxy prints its options
    before it loads scripts.)"""
    import io

    from mitmproxy import optmanager
    from mitmproxy.test import taddons

    from chaos.proxy.addon import HubChaos
    from chaos.proxy.cdn_redirect import CdnRedirect

    with taddons.context(HubChaos(), CdnRedirect()) as tctx:
        out = io.StringIO()
        optmanager.dump_defaults(tctx.options, out)
    # dump_defaults writes YAML: a comment block then `name: default` per option.
    blocks = out.getvalue().split("\n\n")
    click.echo("\n\n".join(b.strip("\n") for b in blocks if "\nhub_" in "\n" + b or b.startswith("hub_")))
