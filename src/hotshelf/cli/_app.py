"""Root typer application; subcommands are registered from their modules."""

from __future__ import annotations

import typer

app = typer.Typer(name="hotshelf", no_args_is_help=True, add_completion=False)


def main() -> None:
    app()
