"""The `chaos` command group: the only place that prints errors and picks exit codes.

0 every expectation met, 1 an expectation failed, 2 bad scenario/option/argument,
3 the environment (missing binary, busy port, component that would not start),
130 interrupted (Ctrl-C or SIGTERM), after tearing the lab down.

Progress from every layer arrives through the `chaos` logger; this module
shows it on stderr as `  .. message`.
"""

from __future__ import annotations

import logging
import signal

import click

from chaos.cli import faults, lab, pull, run
from chaos.cli.options import PROGRESS_REDACTOR
from chaos.errors import ChaosError

EXIT_INTERRUPTED = 130


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so teardown runs as on Ctrl-C."""


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise _Interrupted


class _ChaosGroup(click.Group):
    """Turns ChaosError into `chaos: error: ...` and its exit code."""

    def invoke(self, ctx):
        # SIGTERM (CI cancelling a job) tears down exactly like Ctrl-C.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        _show_progress()
        try:
            return super().invoke(ctx)
        except ChaosError as exc:
            click.echo(f"chaos: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # Whatever the command had started was stopped on the way out
            # (context managers); the command says what, if anything.
            click.echo("chaos: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


class _ProgressHandler(logging.Handler):
    """Progress lines on stderr, `  .. message`; written through click, to
    whatever stderr is when the line is written (tests swap it). The run's
    secrets are masked here too: an engine's progress may quote an answer
    that carries one."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "  .. " if record.levelno < logging.WARNING else "  .. warning: "
        click.echo(prefix + PROGRESS_REDACTOR.text(record.getMessage()), err=True)


def _show_progress() -> None:
    logger = logging.getLogger("chaos")
    if not any(isinstance(h, _ProgressHandler) for h in logger.handlers):
        logger.addHandler(_ProgressHandler())
    logger.setLevel(logging.INFO)


@click.group(cls=_ChaosGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Commands that talk to a running lab (lab, pull, fault, tap) find it with --lab-dir, "
                    "else $CHAOS_LAB_DIR, else ~/.local/state/hub-chaos/lab. Exit codes: 0 every expectation held, "
                    "1 one did not, 2 bad input, 3 the environment, 130 interrupted.")
@click.version_option(package_name="hub-chaos")
def main() -> None:
    """hub-chaos: prove your Docker Hub mirror survives Hub going down."""


for command in (run.run, run.validate, run.schema, run.report, pull.pull, lab.lab, faults.fault, faults.tap,
                faults.proxy_options, faults.addon):
    main.add_command(command)
