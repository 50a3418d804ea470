"""The ``hotshelf`` command line.

Each subcommand lives in its own module and registers itself on ``app``; importing
them here is what puts them on the command line.
"""

from hotshelf.cli._app import app, main

__all__ = ["app", "main"]
