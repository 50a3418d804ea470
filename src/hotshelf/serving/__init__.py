"""The HTTP API: event ingestion, catalog items, stream state (trending, popular, related,
bots), health, metrics, OpenAPI."""

from hotshelf.serving._app import HotshelfApp, create_app
from hotshelf.serving._server import run_server
from hotshelf.serving._service import Service

__all__ = ["HotshelfApp", "Service", "create_app", "run_server"]
