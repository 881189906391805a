"""`python -m chaos`: the same as the `chaos` command."""

from chaos.cli.app import main

main()
