"""Options every command shares (configuration sources) and the error boundary.

``config_from_options`` builds the one typed ``Config`` from ``--config``, ``--set`` and
``--data-dir``; ``cli_errors`` turns any ``HotshelfError`` into a one-line message on
stderr and exit code 1, so no command prints a stack trace for a known failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hotshelf.config import Config, load_config
from hotshelf.errors import HotshelfError, ValidationError

__all__ = [
    "ConfigOpt",
    "DataDirOpt",
    "SetOpt",
    "cli_errors",
    "config_from_options",
    "err_console",
    "progress_bar",
]

err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (default: ./hotshelf.toml)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a setting: section.key=value (repeatable)."),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the log and state live.")
]


def progress_bar(console: Console = err_console) -> Progress:
    """The one progress bar style of long commands: counts, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def config_from_options(
    config: Path | None, overrides: list[str] | None, data_dir: Path | None = None
) -> Config:
    """The configuration these options describe (defaults < file < env < flags)."""
    sets = list(overrides or [])
    if data_dir is not None:
        sets.append(f"data_dir={json.dumps(str(data_dir))}")
    return load_config(config, overrides=sets)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Map hotshelf errors to a clear message and exit code 1."""
    try:
        yield
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        for problem in exc.problems[:100]:
            err_console.print(f"  {problem.path}: {problem.problem}", highlight=False)
        if len(exc.problems) > 100:
            err_console.print(f"  ... and {len(exc.problems) - 100} more", highlight=False)
        raise typer.Exit(1) from None
    except HotshelfError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
