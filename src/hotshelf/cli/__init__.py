"""The ``hotshelf`` command line."""

from hotshelf.cli._app import app, main

__all__ = ["app", "main"]
