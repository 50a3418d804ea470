"""``hotshelf items``: load catalog files into the catalog log, look items up."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, cast, get_args

import msgspec
import typer

from hotshelf.catalog import CatalogView, ItemsFormat, detect_format, load_items_file
from hotshelf.cli._app import app
from hotshelf.cli._options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    cli_errors,
    config_from_options,
    err_console,
    progress_bar,
)
from hotshelf.errors import ValidationError
from hotshelf.events import Item
from hotshelf.log import open_log

__all__ = ["items_app"]

items_app = typer.Typer(name="items", help="Load and look up catalog items.", no_args_is_help=True)
app.add_typer(items_app)

FORMATS: tuple[str, ...] = get_args(ItemsFormat)
FileArg = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, JSON lines or Parquet."),
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)} (default: by extension)."),
]
BatchOpt = Annotated[int, typer.Option(min=1, max=100_000, help="Items per log append.")]


def _format(file: Path, given: str | None) -> ItemsFormat:
    """The file's format, or a usage error (exit code 2)."""
    if given is None:
        try:
            return detect_format(file)
        except ValidationError as exc:
            raise typer.BadParameter(f"{exc.message}; pass --format", param_hint="FILE") from None
    for name in get_args(ItemsFormat):
        if name == given.lower():
            return cast(ItemsFormat, name)
    raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")


def _append(view: CatalogView, items: Sequence[Item], batch_size: int) -> None:
    progress = progress_bar()
    with progress:
        task = progress.add_task("items", total=len(items))
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            view.upsert(chunk)
            progress.advance(task, len(chunk))


@items_app.command()
def load(
    file: FileArg,
    format: FormatOpt = None,
    batch_size: BatchOpt = 1000,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check every row of FILE, then add or replace its items in the catalog.

    A file with any bad row is rejected whole, with each problem listed. Each batch
    is appended atomically; re-running a load after a crash converges (upserts).
    """
    fmt = _format(file, format)
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        with err_console.status(f"reading {file.name}"):
            items = load_items_file(file, fmt)
        if not items:
            err_console.print(f"[red]error:[/red] {file} holds no items", highlight=False)
            raise typer.Exit(1)
        with open_log(cfg, "catalog") as log:
            view = CatalogView(log)
            view.catch_up()
            new = sum(1 for item in items if item.item_id not in view)
            _append(view, items, batch_size)
            err_console.print(
                f"loaded {len(items):,} items ({new:,} new, {len(items) - new:,} replaced); "
                f"the catalog holds {len(view):,} items",
                highlight=False,
            )


@items_app.command()
def get(
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Print one item as JSON (exit code 1 if it is not in the catalog)."""
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        with open_log(cfg, "catalog") as log:
            view = CatalogView(log)
            view.catch_up()
            item = view.get(item_id)
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(item)) + b"\n")
        sys.stdout.flush()
