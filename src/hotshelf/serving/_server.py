"""Running the app: uvicorn with uvloop and httptools, one worker.

Measured against granian (``benchmarks/bench_server.py``): uvicorn+httptools served
this app about 1.3x the requests/s on one-event requests and as many events/s on
100-event batches; it runs in-process, so SIGTERM reaches our lifespan directly and
the logs close cleanly, and it is ready sooner after a restart.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from hotshelf.config import Config
from hotshelf.errors import UnavailableError
from hotshelf.monitoring import configure_logging
from hotshelf.serving._app import create_app

__all__ = ["run_server"]


def run_server(config: Config, *, on_listen: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; ``on_listen`` gets the URL once the socket is bound."""
    import uvicorn  # imported here: the rest of the CLI does not pay for it

    configure_logging(config.logging)
    server_cfg = config.server
    # process-wide for as long as the server runs (training narrows it further)
    threadpool_limits(server_cfg.blas_threads, user_api="blas")
    uv_config = uvicorn.Config(
        create_app(config),
        host=server_cfg.host,
        port=server_cfg.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # hotshelf writes its own access log (server.access_log)
        log_config=None,  # keep the structured logging configured above
        server_header=False,
        # No client address is used (an event's IP is in its body), so uvicorn's
        # X-Forwarded-For rewriting would be a wrapper around every request for nothing.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    sock = _bind(server_cfg.host, server_cfg.port)
    if on_listen is not None:
        on_listen(_url(sock))
    uvicorn.Server(uv_config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a busy port is a clear error, not an exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UnavailableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
