"""The `chaos` command: one module per command group, the only place that
prints errors and picks exit codes (app.py)."""

from chaos.cli.app import main

__all__ = ["main"]
