"""Building requests for the API tests, and a real server around an app.

The app runs under uvicorn in a thread on a loopback port and is reached over real
HTTP with httpx, so parsing, limits and lifespan are the ones production uses.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvicorn

from hotshelf.config import Config, load_config
from hotshelf.serving import HotshelfApp

NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}


def make_config(data_dir: Path, *overrides: str) -> Config:
    """Settings for a test server; embeddings and recommendations are off unless a test
    turns them on (the encoder would spend the tests' CPU embedding catalogs nobody
    searches)."""
    sets = [f"data_dir={json.dumps(str(data_dir))}", "log.fsync=false", "embeddings.serve=false",
            "recommend.serve=false", *overrides]  # fmt: skip
    return load_config(overrides=sets, environ={})


def view(i: int = 0, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "view", "event_id": f"e{i}", "user_id": "u1", "item_id": "i1"}
    event.update(fields)
    return event


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(msgspec.json.encode(e) for e in events)


class Api:
    """``app`` served by uvicorn in a thread; ``client`` talks to it over HTTP."""

    def __init__(self, app: HotshelfApp, *, lifespan: bool = True) -> None:
        self.app = app
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, loop="uvloop", http="httptools", lifespan="on" if lifespan else "off",
            log_config=None, access_log=False,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the server did not start")
            time.sleep(0.005)
        # No Nagle: httpx writes headers and body separately, and a delayed ACK would
        # add 40 ms to every request.
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=30,
            transport=httpx.HTTPTransport(socket_options=nodelay),
        )

    def _run(self, sock: socket.socket) -> None:
        # uvicorn answers a failed lifespan startup with sys.exit(3); here that only
        # ends this thread, and the constructor reports it.
        with contextlib.suppress(SystemExit):
            self._server.run(sockets=[sock])

    def close(self) -> None:
        if self._thread.is_alive():
            self.client.close()
            self._server.should_exit = True
            self._thread.join(timeout=30)

    @property
    def end_offset(self) -> int:
        log = self.app.service.events_log
        assert log is not None
        return log.end_offset

    def post_events(self, events: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post("/v1/events", content=ndjson(events), headers=NDJSON)
