"""`chaos fault ...`, `chaos tap` and `chaos proxy-options`: the fault proxy
(the lab's, or any with --control) driven by hand."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import click

from chaos.cli.options import control_client, with_control
from chaos.errors import UsageError, quoted
from chaos.faults.spec import MAX_TTL_S
from chaos.vocab.names import ORIGINS


@click.group()
def fault() -> None:
    """Switch faults on and off in a running fault proxy."""


@fault.command("list")
@click.option("--json", "as_json", is_flag=True, help="The faults as the control API returns them: params, match, trigger (with its seed), counters, expiry.")
@with_control
def fault_list(as_json, control_url, token_file, lab_dir) -> None:
    """List active faults."""
    faults = control_client(control_url, lab_dir, token_file).list()
    if as_json:
        click.echo(json.dumps(faults, indent=2))
        return
    if not faults:
        click.echo("no active faults")
    for item in faults:
        left = max(0.0, item.get("expires_at", 0) - time.time())
        counters = item.get("counters") or {}
        trigger = item.get("trigger") or {}
        click.echo(f"{item['name']:<20} {item['kind']:<12} params={json.dumps(item.get('params', {}))} "
                   f"match={json.dumps({k: v for k, v in item.get('match', {}).items() if v})}"
                   + (f" trigger={json.dumps(trigger)}" if trigger else "")
                   + (f" matched={counters.get('matched', 0)} fired={counters.get('fired', 0)} applied={counters.get('applied', 0)}" if counters else "")
                   + f" expires in {left:.0f}s")


@fault.command("kinds")
def fault_kinds() -> None:
    """List the fault kinds with their parameters (required ones first)."""
    import dataclasses
    import typing

    from chaos.faults.registry import kinds

    for name, kind in sorted(kinds().items()):
        hints = typing.get_type_hints(kind.Params)
        params = []
        for f in dataclasses.fields(kind.Params):
            type_name = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                params.append(f"{f.name}: {type_name} (required)")
            else:
                params.append(f"{f.name}: {type_name} = {f.default!r}")
        click.echo(f"{name:<12} {_first_sentence(sys.modules[kind.__module__].__doc__ or '', name)}")
        for param in params:
            click.echo(f"{'':<12}   {param}")


def _first_sentence(doc: str, name: str) -> str:
    """The kind module's docstring, its first sentence, without the leading "name:"."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    paragraph = paragraph.removeprefix(f"{name}:").strip()
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


def _key_values(pairs: tuple[str, ...], option: str) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {quoted(pair)}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)  # numbers and booleans keep their type
        except json.JSONDecodeError:
            out[key] = value
    return out


class _Seconds(click.ParamType):
    """Seconds: a finite number above 0, at most `maximum`."""

    name = "seconds"

    def __init__(self, maximum: float = math.inf):
        self.maximum = maximum

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{quoted(value)} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{quoted(value)}: expected a finite number of seconds above 0", param, ctx)
        if seconds > self.maximum:
            self.fail(f"{quoted(value)}: at most {self.maximum:g} seconds", param, ctx)
        return seconds


SECONDS = _Seconds()
TTL_SECONDS = _Seconds(MAX_TTL_S)


def _flap(value: str | None) -> dict | None:
    if value is None:
        return None
    period, sep, fraction = value.partition(":")
    try:
        return {"period_s": float(period), "down_fraction": float(fraction)} if sep else None
    except ValueError:
        pass
    raise UsageError(f"--flap {quoted(value)}: expected PERIOD_S:DOWN_FRACTION, e.g. 10:0.5")


@fault.command("add")
@click.argument("name", required=False)
@click.option("-f", "--file", "spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Fault spec(s) from a YAML or JSON file: one mapping, or a list (as in a scenario's fault step).")
@click.option("--kind", help="Fault kind (`chaos fault kinds` lists them), e.g. refuse or reset.")
@click.option("-p", "--param", "params", multiple=True, help="Kind parameter KEY=VALUE (repeatable).")
@click.option("--role", "roles", multiple=True, help="Only this role: registry, auth or cdn (repeatable).")
@click.option("--host", "hosts", multiple=True, help="Only this host name or glob (repeatable).")
@click.option("--endpoint", "endpoints", multiple=True, help="Only this endpoint kind, e.g. manifest or manifest_tag (repeatable).")
@click.option("--method", "methods", multiple=True, help="Only this HTTP method (repeatable).")
@click.option("--repository", help="Only repositories matching this glob, e.g. 'library/*'.")
@click.option("--client", "clients", multiple=True, help="Only requests from this client address, glob or CIDR (repeatable).")
@click.option("--origin", "origins", multiple=True, type=click.Choice(ORIGINS),
              help="Only requests from this origin: the mirror, the client engine, the push registry (repeatable).")
@click.option("--probability", type=click.FloatRange(0, 1), help="Fire for this fraction of matching requests.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of --probability's draws (shown by `fault list --json`).")
@click.option("--first", type=click.IntRange(min=1), help="Fire at most this many times.")
@click.option("--every", type=click.IntRange(min=1), help="Fire on every Nth matching request.")
@click.option("--after", type=click.IntRange(min=0), help="Skip the first N matching requests.")
@click.option("--start-after", "start_after_s", type=SECONDS, help="Seconds after it is added before it can fire.")
@click.option("--duration", "duration_s", type=SECONDS, help="Seconds it can fire for (from --start-after).")
@click.option("--flap", help="PERIOD_S:DOWN_FRACTION: fire during the first fraction of every period, e.g. 10:0.5.")
@click.option("--ttl", "ttl_s", type=TTL_SECONDS, help=f"Seconds until the fault clears itself (default 300, at most {MAX_TTL_S:g}).")
@with_control
def fault_add(name, spec_file, kind, params, roles, hosts, endpoints, methods, repository, clients, origins,
              probability, seed, first, every, after, start_after_s, duration_s, flap, ttl_s, control_url, token_file, lab_dir) -> None:
    """Switch on fault NAME (or the faults in a file, -f).

    Everything the control API takes can be said with flags: the kind's
    parameters (-p), the match (--role ... --origin), the trigger
    (--probability ... --flap) and the lifetime (--ttl)."""
    flags_used = any([kind, params, roles, hosts, endpoints, methods, repository, clients, origins, ttl_s,
                      probability is not None, seed is not None, first, every, after, start_after_s, duration_s, flap])
    if spec_file is not None:
        if name or flags_used:
            raise UsageError("fault add -f FILE: the file says everything; give no NAME and no other option")
        specs = _specs_from_file(spec_file)
    else:
        if not name or not kind:
            raise UsageError("fault add: give NAME and --kind (or -f FILE)")
        match = {k: list(v) for k, v in (("roles", roles), ("hosts", hosts), ("endpoints", endpoints),
                                          ("methods", [m.upper() for m in methods]), ("clients", clients),
                                          ("origins", origins)) if v}
        if repository:
            match["repository"] = repository
        trigger = {k: v for k, v in (("probability", probability), ("seed", seed), ("first", first), ("every", every),
                                      ("after", after), ("start_after_s", start_after_s), ("duration_s", duration_s),
                                      ("flap", _flap(flap))) if v is not None}
        spec = {"name": name, "kind": kind, "params": _key_values(params, "--param"), "match": match}
        if trigger:
            spec["trigger"] = trigger
        if ttl_s is not None:
            spec["ttl_s"] = ttl_s
        specs = [spec]
    control = control_client(control_url, lab_dir, token_file)
    for spec in specs:
        stored = control.add(spec)
        click.echo(f"fault {stored['name']} ({stored['kind']}) on, expires in {stored['expires_at'] - time.time():.0f}s")


def _specs_from_file(path: Path) -> list[dict]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UsageError(f"{path}:{mark.line + 1 if mark else 1}: not YAML or JSON: {getattr(exc, 'problem', exc)}") from None
    specs = data if isinstance(data, list) else [data]
    if not specs or not all(isinstance(s, dict) for s in specs):
        raise UsageError(f"{path}: expected a fault spec (a mapping with name and kind) or a list of them")
    return specs


@fault.command("rm")
@click.argument("names", nargs=-1, required=True)
@with_control
def fault_rm(names, control_url, token_file, lab_dir) -> None:
    """Switch off the named faults."""
    control = control_client(control_url, lab_dir, token_file)
    for name in names:
        control.remove(name)
        click.echo(f"fault {name} off")


@fault.command("reset")
@with_control
def fault_reset(control_url, token_file, lab_dir) -> None:
    """Switch off every fault."""
    removed = control_client(control_url, lab_dir, token_file).reset()
    click.echo(f"{removed} fault(s) off")


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this event id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--origin", "origins", multiple=True, type=click.Choice(ORIGINS), help="Only requests from this origin (repeatable).")
@with_control
def tap(follow, after, as_json, origins, control_url, token_file, lab_dir) -> None:
    """Print the upstream requests the fault proxy saw (the event tap): who
    asked (origin), what (method, host, endpoint kind, repository), the
    answer, body bytes, and the fault that acted."""
    control = control_client(control_url, lab_dir, token_file)
    cursor = after
    if not as_json:
        click.echo(f"{'id':>6} {'origin':<13} {'method':<7} {'host':<32} {'kind':<11} {'repository':<24} {'status':<6} {'bytes':>11} fault")
    while True:
        page = control.events(after=cursor, limit=1000)
        if page.dropped:
            click.echo(f"({page.dropped} events dropped: the tap's ring overflowed)", err=True)
        for event in page.events:
            if origins and event.get("origin") not in origins:
                continue
            if as_json:
                click.echo(json.dumps(event))
            else:
                click.echo(f"{event['id']:>6} {event.get('origin') or '-':<13} {event.get('method') or '-':<7} "
                           f"{event.get('host') or '-':<32} {event.get('kind') or '-':<11} {event.get('repository') or '-':<24} "
                           f"{event.get('status') or '-':<6} {event.get('bytes') or 0:>10}B {event.get('fault') or ''}")
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


@click.command("addon")
def addon() -> None:
    """Print the path of the fault proxy's mitmproxy addon script:
    `mitmdump -s "$(chaos addon)" ...` (or mitmweb)."""
    from chaos.shipped import addon_path

    click.echo(str(addon_path()))
