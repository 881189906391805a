"""The `chaos` command. The only place that prints errors and picks exit codes:

0 every expectation met, 1 an expectation failed, 2 bad scenario/option/argument,
3 the environment (missing binary, busy port, component that would not start),
130 interrupted (Ctrl-C or SIGTERM), after tearing the lab down.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from chaos.clients.engines import ENGINES
from chaos.errors import ChaosError, UsageError

DEFAULT_LAB_DIR = Path(".chaos/lab")
EXIT_INTERRUPTED = 130


def _echo_progress(message: str) -> None:
    click.echo(f"  .. {message}", err=True)


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


class _ChaosGroup(click.Group):
    """Turns ChaosError into `chaos: error: ...` and its exit code."""

    def invoke(self, ctx):
        # SIGTERM (CI cancelling a job) tears down exactly like Ctrl-C.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            return super().invoke(ctx)
        except ChaosError as exc:
            click.echo(f"chaos: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("chaos: interrupted; lab stopped, faults cleared", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=_ChaosGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub-chaos")
def main() -> None:
    """hub-chaos: prove your Docker Hub mirror survives Hub going down."""


# -- run / validate ------------------------------------------------------------


def _scenario_files(paths: tuple[Path, ...]) -> list[Path]:
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


def _load_all(paths: tuple[Path, ...], var_pairs: tuple[str, ...]):
    from chaos.scenario.loader import load_scenario
    from chaos.scenario.variables import parse_overrides

    overrides = parse_overrides(var_pairs)
    return [load_scenario(path, overrides=overrides) for path in _scenario_files(paths)]


_var_option = click.option("--var", "var_pairs", multiple=True, metavar="NAME=VALUE",
                           help="Set a scenario variable (beats the environment and the file's defaults).")


@main.command()
@click.argument("scenario_paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Folder for journal.json and component logs (default: runs/<time>-<scenario>).")
@click.option("--tag", "tags", multiple=True, help="Only scenarios with this tag (repeatable: any of them).")
@_var_option
@click.option("--engine", type=click.Choice(ENGINES), default="builtin", show_default=True,
              help="Client that pulls: the builtin emulation, a real Docker daemon, or skopeo (steps may choose their own).")
@click.option("--keep-lab", is_flag=True, help="Leave the lab running after the run (stop it with `chaos lab down`).")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; start nothing.")
def run(scenario_paths, run_dir, tags, var_pairs, engine, keep_lab, dry_run) -> None:
    """Run scenario files (or every scenario in a folder) and judge them.

    Each scenario gets its own embedded lab (or its target), its own run folder
    and journal.json. Exit 0 when every expectation held, 1 when one failed.
    """
    from chaos.report.console import plan

    scenarios = _load_all(scenario_paths, var_pairs)  # any bad file: exit 2 before anything starts
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
    journals = []
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    for scenario in scenarios:
        if run_dir is None:
            folder = Path("runs") / f"{stamp}-{scenario.name}"
        else:
            folder = run_dir if len(scenarios) == 1 else run_dir / scenario.name
        journals.append((scenario, _run_one(scenario, folder, engine, keep_lab)))
    if len(journals) > 1:
        failed = [s.name for s, j in journals if j.status != "completed"]
        click.echo(f"{len(journals) - len(failed)}/{len(journals)} scenarios passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(0 if all(j.status == "completed" for _, j in journals) else 1)


def _run_one(scenario, run_dir: Path, engine: str, keep_lab: bool):
    from chaos.lab.lab import Lab
    from chaos.lab.target import state_for_target
    from chaos.report.console import step_line, summary_line
    from chaos.runner.runner import Runner

    run_dir.mkdir(parents=True, exist_ok=True)
    where = f"target {scenario.target.mirror_url}" if scenario.target else "embedded lab"
    click.echo(f"scenario {scenario.name}: {len(scenario.all_steps())} steps against the {where}  (run folder {run_dir})")
    name_width = max(len(step.name) for step in scenario.all_steps())

    def execute(state, lab_handle):
        runner = Runner(
            scenario, state, run_dir, lab_handle=lab_handle, engine=engine,
            on_step_end=lambda i, step, record: click.echo(step_line(i, runner.total_steps, step, record, name_width)),
            progress=_echo_progress,
        )
        try:
            journal = runner.run()
        except KeyboardInterrupt:
            click.echo(summary_line(runner.journal, str(runner.journal_path)))
            raise
        click.echo(summary_line(journal, str(runner.journal_path)))
        return journal

    engines = _engines_used(scenario, engine)
    if scenario.target:
        state = state_for_target(scenario.target)
        _preflight_engines(engines, state)
        return execute(state, None)
    lab = Lab(scenario.lab, run_dir / "lab", progress=_echo_progress, detached=keep_lab, engines=engines - {"builtin"})
    lab.start()
    try:
        journal = execute(lab.state, lab)
    except BaseException:
        lab.stop()
        raise
    if keep_lab:
        click.echo(f"lab left running: chaos lab status --lab-dir {run_dir / 'lab'}  /  chaos lab down --lab-dir {run_dir / 'lab'}")
    else:
        lab.stop()
    return journal


def _engines_used(scenario, run_engine: str) -> set[str]:
    from chaos.scenario.model import PullAction

    return {run_engine} | {s.action.engine for s in scenario.all_steps() if isinstance(s.action, PullAction) and s.action.engine}


def _preflight_engines(engines: set[str], state) -> None:
    """Against a target no lab starts an engine: say now, before any step, when one cannot run (exit 3)."""
    from chaos.clients.engines import make_engine

    for name in sorted(engines - {"builtin"}):
        make_engine(name, lab=state, credentials=None, timeout=10.0, progress=None).close()


@main.command()
@click.argument("scenario_paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_var_option
def validate(scenario_paths, var_pairs) -> None:
    """Check scenario files (or folders of them) without starting anything."""
    for scenario in _load_all(scenario_paths, var_pairs):
        click.echo(f"{scenario.path}: ok ({scenario.name}, {len(scenario.all_steps())} steps, {len(scenario.lab.images)} images)")


@main.command()
def schema() -> None:
    """Print the JSON Schema of scenario files (for editors: VS Code's YAML extension)."""
    from chaos.scenario.schema import schema_json

    click.echo(schema_json(), nl=False)


# -- pull ----------------------------------------------------------------------


@main.command()
@click.argument("image")
@click.option("--mirror", "mirror_url", help="Mirror URL (default: the running lab's mirror).")
@click.option("--login", "user", help="Pull as this Hub user (like `docker login` first).")
@click.option("--password", envvar="CHAOS_PASSWORD", help="Password for --login (default: the lab's, or $CHAOS_PASSWORD).")
@click.option("--proxy", "proxy_url", help="Fault proxy for Hub traffic (default: the running lab's).")
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), help="CA to trust for Hub TLS through the proxy.")
@click.option("--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR, show_default=True,
              help="Where `chaos lab up` keeps its state.")
@click.option("--live", is_flag=True, help="Allow pulling from the REAL Docker Hub (no fault proxy).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=3600), default=30.0, show_default=True,
              help="Seconds: each network operation (builtin), the whole pull (docker, skopeo).")
@click.option("--engine", type=click.Choice(ENGINES), default="builtin", show_default=True,
              help="Who pulls: the builtin emulation, the Docker daemon (the lab's, else DOCKER_HOST), or skopeo.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pull(image, mirror_url, user, password, proxy_url, ca_file, lab_dir, live, timeout, engine, as_json) -> None:
    """Pull IMAGE like a Docker daemon with registry-mirrors: mirror first, then Hub.

    With --timeout, the builtin engine bounds each network operation; docker
    and skopeo bound the whole pull."""
    from chaos.clients.engines import make_engine
    from chaos.lab.layout import LabPaths, LabState
    from chaos.vocab.reference import parse_reference

    ref = parse_reference(image)
    state_file = LabPaths(lab_dir).state_file
    lab = LabState.load(state_file) if state_file.exists() else None
    if lab:
        mirror_url = mirror_url or lab.mirror_url
        proxy_url = proxy_url or lab.proxy_url
        ca_file = ca_file or lab.ca_file
        if user and password is None:
            password = lab.users.get(user)
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
                     docker_host=lab.docker_host if lab else "")
    puller = make_engine(engine, lab=where, credentials=(user, password) if user else None, timeout=timeout, progress=_echo_progress)
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


# -- lab -----------------------------------------------------------------------


@main.group()
def lab() -> None:
    """Keep a lab running to poke at by hand."""


@lab.command("up")
@click.argument("scenario_file", required=False, type=click.Path(path_type=Path))
@click.option("--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR, show_default=True)
@click.option("--engine", "engines", multiple=True, type=click.Choice([e for e in ENGINES if e != "builtin"]),
              help="Also serve this real engine (docker: a private dockerd behind the mirror; repeatable).")
def lab_up(scenario_file: Path | None, lab_dir: Path, engines: tuple[str, ...]) -> None:
    """Start a lab (hub seeded from SCENARIO_FILE's lab section, default scenarios/hub-down.yaml)."""
    from chaos.lab.lab import Lab
    from chaos.lab.layout import LabPaths
    from chaos.scenario.loader import load_scenario

    if LabPaths(lab_dir).state_file.exists():
        raise UsageError(f"a lab is already running in {lab_dir} (`chaos lab down --lab-dir {lab_dir}` first)")
    scenario_file = scenario_file or Path(__file__).resolve().parents[1] / "scenarios" / "hub-down.yaml"
    spec = load_scenario(scenario_file).lab
    lab_ = Lab(spec, lab_dir, progress=_echo_progress, detached=True, engines=set(engines))
    state = lab_.start()
    _print_state(state)


@lab.command("status")
@click.option("--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR, show_default=True)
def lab_status(lab_dir: Path) -> None:
    """Show the running lab's endpoints and whether each component is alive."""
    from chaos.lab.layout import LabPaths, LabState
    from chaos.lab.process import group_alive

    state_file = LabPaths(lab_dir).state_file
    if not state_file.exists():
        click.echo(f"no lab running in {lab_dir}")
        sys.exit(1)
    state = LabState.load(state_file)
    _print_state(state)
    dead = [name for name, pgid in state.process_groups.items() if not group_alive(pgid)]
    for name, pgid in state.process_groups.items():
        click.echo(f"  {name:<14} pid {pgid:<8} {'DEAD' if name in dead else 'running'}")
    sys.exit(1 if dead else 0)


@lab.command("down")
@click.option("--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR, show_default=True)
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


# -- faults and the tap --------------------------------------------------------


def _control(control_url: str | None, lab_dir: Path):
    from chaos.lab.layout import LabPaths, LabState
    from chaos.proxy.control_client import ControlClient

    if not control_url:
        state_file = LabPaths(lab_dir).state_file
        if not state_file.exists():
            raise UsageError(f"no lab running in {lab_dir}: pass --control URL of a fault proxy, or `chaos lab up`")
        control_url = LabState.load(state_file).control_url
    return ControlClient(control_url)


_control_options = [
    click.option("--control", "control_url", help="Control API of a fault proxy (default: the running lab's)."),
    click.option("--lab-dir", type=click.Path(path_type=Path), default=DEFAULT_LAB_DIR, show_default=True),
]


def _with_control(func):
    for option in reversed(_control_options):
        func = option(func)
    return func


@main.group()
def fault() -> None:
    """Switch faults on and off in a running fault proxy."""


@fault.command("list")
@_with_control
def fault_list(control_url, lab_dir) -> None:
    """List active faults."""
    faults = _control(control_url, lab_dir).list()
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
@_with_control
def fault_add(name, kind, params, roles, hosts, endpoints, methods, repository, ttl_s, control_url, lab_dir) -> None:
    """Switch on fault NAME."""
    match = {k: list(v) for k, v in (("roles", roles), ("hosts", hosts), ("endpoints", endpoints),
                                      ("methods", [m.upper() for m in methods])) if v}
    if repository:
        match["repository"] = repository
    spec = {"name": name, "kind": kind, "params": _key_values(params, "--param"), "match": match}
    if ttl_s is not None:
        spec["ttl_s"] = ttl_s
    stored = _control(control_url, lab_dir).add(spec)
    click.echo(f"fault {stored['name']} ({stored['kind']}) on, expires in {stored['expires_at'] - time.time():.0f}s")


@fault.command("rm")
@click.argument("names", nargs=-1, required=True)
@_with_control
def fault_rm(names, control_url, lab_dir) -> None:
    """Switch off the named faults."""
    control = _control(control_url, lab_dir)
    for name in names:
        control.remove(name)
        click.echo(f"fault {name} off")


@fault.command("reset")
@_with_control
def fault_reset(control_url, lab_dir) -> None:
    """Switch off every fault."""
    removed = _control(control_url, lab_dir).reset()
    click.echo(f"{removed} fault(s) off")


@main.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this event id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_with_control
def tap(follow, after, as_json, control_url, lab_dir) -> None:
    """Print the upstream requests the fault proxy saw (the event tap)."""
    control = _control(control_url, lab_dir)
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


@main.command("proxy-options")
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


def _print_state(state) -> None:
    click.echo(f"mirror         {state.mirror_url}")
    click.echo(f"fault proxy    {state.proxy_url}  (control {state.control_url})")
    click.echo(f"proxy CA       {state.ca_file}")
    click.echo(f"lab hub        {state.hub_url}  (auth {state.auth_url}, blob CDN {state.cdn_url})")
    if state.push_registry_url:
        click.echo(f"push registry  {state.push_registry_url}")
    if state.docker_host:
        click.echo(f"dockerd        {state.docker_host}  (DOCKER_HOST={state.docker_host} docker pull ...)")


if __name__ == "__main__":
    main()
