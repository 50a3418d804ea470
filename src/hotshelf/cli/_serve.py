"""``hotshelf serve``: run the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hotshelf.cli._app import app
from hotshelf.cli._options import ConfigOpt, DataDirOpt, SetOpt, cli_errors, config_from_options


@app.command()
def serve(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default: server.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to bind, 0 for any (default: server.port).")
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Serve the HTTP API (events, items, health, metrics) until SIGTERM or Ctrl-C."""
    with cli_errors():
        sets = list(overrides or [])
        if host is not None:
            sets.append(f"server.host={json.dumps(host)}")
        if port is not None:
            sets.append(f"server.port={port}")
        cfg = config_from_options(config, sets, data_dir)
        from hotshelf.serving import run_server  # the server stack loads only for this command

        def announce(url: str) -> None:
            typer.echo(f"hotshelf listening on {url} (data in {Path(cfg.data_dir).resolve()})")

        run_server(cfg, on_listen=announce)
