"""The ``hotshelf`` command line.

Each subcommand lives in its own module and registers itself on ``app``; importing
them here is what puts them on the command line.
"""

from hotshelf.cli import (  # noqa: F401  importing registers the commands
    _demo,
    _embed,
    _evaluate,
    _finetune,
    _ingest,
    _items,
    _log_cmds,
    _serve,
    _simulate,
    _stream_cmds,
    _train,
)
from hotshelf.cli._app import app, main

__all__ = ["app", "main"]
