"""A recommend replica: a process that answers ``/v1/recommend`` for the server.

One event loop holds one core under the GIL, and at ~1,000 recommendations/s the
recommender alone keeps it ~70% busy (``docs/BENCHMARKS.md``). A replica puts the
recommender's work on another core, the way a database's read replica follows its
write-ahead log: it opens the server's logs as followers (``open_log(follow=True)``:
no lock, nothing written), keeps its own catalog view, stream processor (restored
from the server's snapshot, ``write_snapshots=False``), embeddings
(``EmbeddingReplica``: the vectors the server's job stored, reloaded when its
manifest changes), attribution feed and recommender, and loads each collaborative
model the server saves (``RecommendRunner(follower=True)``). It writes nothing under
``data_dir``.

The server (``_replicas.ReplicaPool``) starts replicas and talks to each over a Unix
socket in frames: a 4-byte big-endian length, then a msgpack array.

* request ``[id, need, catalog_need, body]``: ``body`` is the HTTP request's body
  as received; ``need`` is the events-log offset the replica must have applied first
  (the end of the visitor's last ingested events: read-your-writes), and
  ``catalog_need`` the catalog log's (its end when the server forwarded the request:
  an item added a moment ago is known);
* answer ``[id, status, applied, body, impression]``: ``status`` 200 with the list's
  JSON and the encoded impression event for the server to append (a replica never
  appends), or ``STATUS_LAGGING`` when it could not apply the needs within
  ``CATCH_UP_TIMEOUT_S``, or an error's status and JSON body; ``applied`` is how far
  its feed has applied the events log, so the server can forget offsets every
  replica has passed.

A replica exits on SIGTERM, and by itself when the server that started it is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec

from hotshelf.config import Config
from hotshelf.errors import HotshelfError, UnavailableError
from hotshelf.monitoring import Metrics, configure_logging, get_logger
from hotshelf.serving._http import error_json, error_response, json_response
from hotshelf.serving._recommend import decode_request

if TYPE_CHECKING:
    from hotshelf.catalog import CatalogView
    from hotshelf.embeddings import EmbeddingReplica
    from hotshelf.log import EventLog
    from hotshelf.serving._recommend import RecommendRunner
    from hotshelf.serving._stream import RemoteReader, StreamRunner

__all__ = [
    "CATCH_UP_TIMEOUT_S",
    "STATUS_LAGGING",
    "FrameReader",
    "ReplicaService",
    "encode_frame",
    "main",
]

_logger = get_logger("hotshelf.replica")
STATUS_LAGGING = 0  # the answer's status when ``need`` was not applied in time
CATCH_UP_TIMEOUT_S = 1.0
START_CATCH_UP_TIMEOUT_S = 300.0  # how long start-up waits for the stream state
_LEADER_CHECK_S = 1.0
CATALOG_POLL_S = 0.05
_POLL_S = 0.002
_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 * 1024 * 1024


def encode_frame(value: Any) -> bytes:
    """One frame: the length, then ``value`` in msgpack."""
    payload = msgspec.msgpack.encode(value)
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into frames' msgpack payloads."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Any]:
        """Each whole frame ``data`` completes, decoded; ``ValueError`` for a frame
        longer than any side sends (the stream is not ours)."""
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > _MAX_FRAME:
                raise ValueError(f"a frame of {length} bytes")
            end = start + _HEADER.size + length
            if end > len(buffer):
                break
            yield msgspec.msgpack.decode(memoryview(buffer)[start + _HEADER.size : end])
            start = end
        del buffer[:start]


class ReplicaService:
    """The server's read side over its logs, in this process (see the module doc)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics(process=False)
        self.events_log: EventLog | None = None
        self.catalog_log: EventLog | None = None
        self.batch_log: EventLog | None = None
        self.catalog: CatalogView | None = None
        self.embeddings: EmbeddingReplica | None = None
        self.stream: StreamRunner | RemoteReader | None = None
        self.runner: RecommendRunner | None = None
        self._stop = threading.Event()
        self._catalog_thread = threading.Thread(
            target=self._follow_catalog, name="hotshelf-catalog", daemon=True
        )

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Follow the logs and load what the server saved; returns once the state has
        caught up with the logs as they were at the start (blocking)."""
        from hotshelf.catalog import CatalogView
        from hotshelf.log import open_log
        from hotshelf.serving._recommend import RecommendRunner
        from hotshelf.serving._stream import open_stream

        cfg = self.config
        started = time.perf_counter()
        try:
            self.events_log = open_log(cfg, "events", follow=True)
            self.catalog_log = open_log(cfg, "catalog", follow=True)
            self.catalog = CatalogView(self.catalog_log)
            self.catalog.catch_up()
            if cfg.embeddings.serve:
                from hotshelf.embeddings import EmbeddingReplica

                self.embeddings = EmbeddingReplica(cfg)
                self.embeddings.start()
            if cfg.stream.serve:
                self.batch_log = open_log(cfg, "events.batch", follow=True)
                self.stream = open_stream(
                    cfg, self.events_log, self.catalog_log, self.batch_log, write_snapshots=False
                )
                self.stream.start()
            runner = RecommendRunner(
                cfg, self.catalog, self.events_log, self.batch_log, stream=self.stream,
                embeddings=self.embeddings, metrics=self.metrics, follower=True,
            )  # fmt: skip
            self.runner = runner
            runner.feed.catch_up()
            runner.start()
            self._catalog_thread.start()
            self._wait_for_stream()
        except BaseException:
            self.close()
            raise
        _logger.info("replica.started", pid=os.getpid(), applied=self.applied,
                     seconds=round(time.perf_counter() - started, 3))  # fmt: skip

    def _wait_for_stream(self) -> None:
        """Until the stream state reflects the logs as they were on entry (a processor's;
        the partitions' snapshots are as fresh as they are)."""
        from hotshelf.serving._stream import StreamRunner

        stream = self.stream
        if not isinstance(stream, StreamRunner):
            return
        deadline = time.monotonic() + START_CATCH_UP_TIMEOUT_S
        logs = {"events": self.events_log, "catalog": self.catalog_log,
                "events.batch": self.batch_log}  # fmt: skip
        wanted = {topic: log.end_offset for topic, log in logs.items() if log is not None}
        while True:
            if stream.failure is not None:
                raise UnavailableError(f"the replica's stream processor failed: {stream.failure}")
            offsets = stream.processor.offsets()
            if all(offsets.get(topic, 0) >= end for topic, end in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise UnavailableError("the replica's stream state did not catch up in time")
            time.sleep(0.02)

    def _follow_catalog(self) -> None:
        """Apply the catalog log as the server appends to it, until ``close``; a request
        that needs a newer catalog catches it up itself (``catch_up_to``)."""
        catalog, log = self.catalog, self.catalog_log
        assert catalog is not None
        assert log is not None
        while not self._stop.is_set():
            try:
                catalog.catch_up()
            except Exception:  # closing, or a damaged record: logged, tried again
                if self._stop.is_set():
                    return
                _logger.exception("replica.catalog_failed")
            self._stop.wait(CATALOG_POLL_S)

    def close(self) -> None:
        self._stop.set()
        if self.runner is not None:
            self.runner.close()
        if self.stream is not None:
            self.stream.close()
        if self.embeddings is not None:
            self.embeddings.close()
        if self._catalog_thread.is_alive():
            self._catalog_thread.join(5.0)
        for log in (self.events_log, self.catalog_log, self.batch_log):
            if log is not None:
                log.close()

    # -- requests -----------------------------------------------------------------------

    @property
    def applied(self) -> int:
        """The events log's next offset to apply (every record below it is applied)."""
        return 0 if self.runner is None else self.runner.feed.applied

    def caught_up(self, need: int, catalog_need: int) -> bool:
        """Whether the events log is applied up to ``need`` and the catalog up to
        ``catalog_need``."""
        catalog = self.catalog
        return self.applied >= need and catalog is not None and catalog.offset >= catalog_need

    def catch_up_to(
        self, need: int, catalog_need: int, timeout_s: float = CATCH_UP_TIMEOUT_S
    ) -> bool:
        """Apply the logs up to ``need`` and ``catalog_need`` now (blocking); False if
        that could not be done in ``timeout_s``."""
        runner, catalog = self.runner, self.catalog
        events_log, catalog_log = self.events_log, self.catalog_log
        if runner is None or catalog is None or events_log is None or catalog_log is None:
            return False
        deadline = time.monotonic() + timeout_s
        while catalog.offset < catalog_need:
            left = deadline - time.monotonic()
            if left <= 0 or not wait_for_record(catalog_log, catalog_need - 1, left):
                return False
            catalog.catch_up()
        while runner.feed.applied < need:
            left = deadline - time.monotonic()
            if left <= 0 or not wait_for_record(events_log, need - 1, left):
                return False
            runner.feed.catch_up()
        return True

    def answer(self, body: bytes) -> tuple[int, bytes, bytes | None]:
        """(status, JSON body, encoded impression or None) for one request's body."""
        runner = self.runner
        try:
            if runner is None:
                raise UnavailableError("the replica is starting or stopping")
            served, impression = runner.serve(decode_request(body))
        except HotshelfError as exc:
            error = error_response(exc)
            return error.status, error.body, None
        except Exception:  # answered as the server's app answers it
            _logger.exception("replica.request_failed")
            return 500, error_json(500, "internal_error", "internal error").body, None
        return 200, json_response(served).body, impression


def wait_for_record(log: EventLog, offset: int, timeout_s: float) -> bool:
    """Wait until ``log`` holds a record at ``offset``; False on timeout. A follower
    waits on its writer's tail marker; a Redis stream is polled as often."""
    from hotshelf.log import LogFollower

    if isinstance(log, LogFollower):
        return log.wait_for(offset, timeout_s)
    deadline = time.monotonic() + timeout_s
    while log.end_offset <= offset:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(_POLL_S, left))
    return True


class _ReplicaProtocol(asyncio.Protocol):
    """One connection from the server: requests in, answers out, in any order."""

    def __init__(self, service: ReplicaService) -> None:
        self.service = service
        self.frames = FrameReader()
        self.transport: asyncio.Transport | None = None
        self._waiting: set[asyncio.Future[None]] = set()  # requests waiting for ``need``

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            frames = list(self.frames.feed(data))
        except (ValueError, msgspec.DecodeError) as exc:
            _logger.error("replica.bad_frame", error=str(exc))
            if self.transport is not None:
                self.transport.close()
            return
        for frame in frames:
            rid, need, catalog_need, body = frame
            if self.service.caught_up(need, catalog_need):
                self._answer(rid, body)
            else:
                task = asyncio.ensure_future(self._answer_later(rid, need, catalog_need, body))
                self._waiting.add(task)
                task.add_done_callback(self._waiting.discard)

    async def _answer_later(self, rid: int, need: int, catalog_need: int, body: bytes) -> None:
        caught_up = await asyncio.to_thread(self.service.catch_up_to, need, catalog_need)
        if caught_up:
            self._answer(rid, body)
        else:
            self._send([rid, STATUS_LAGGING, self.service.applied, b"", None])

    def _answer(self, rid: int, body: bytes) -> None:
        status, payload, impression = self.service.answer(body)
        self._send([rid, status, self.service.applied, payload, impression])

    def _send(self, answer: list[Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(answer))


async def serve(service: ReplicaService, socket_path: str, leader_pid: int | None) -> None:
    """Answer the server on ``socket_path`` until SIGTERM/SIGINT or the server is gone."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_unix_server(lambda: _ReplicaProtocol(service), socket_path)
    _logger.info("replica.listening", socket=socket_path)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), _LEADER_CHECK_S)
            except TimeoutError:
                if leader_pid is not None and os.getppid() != leader_pid:
                    _logger.warning("replica.server_gone", leader_pid=leader_pid)
                    return
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    """A replica's process: ``--config FILE --socket PATH [--leader-pid PID]``."""
    parser = argparse.ArgumentParser(prog="hotshelf-replica", description=__doc__)
    parser.add_argument("--config", required=True, help="the server's config, as JSON")
    parser.add_argument("--socket", required=True, help="the Unix socket to answer on")
    parser.add_argument("--leader-pid", type=int, default=None)
    args = parser.parse_args(argv)
    config = msgspec.json.decode(Path(args.config).read_bytes(), type=Config)
    configure_logging(config.logging)
    from threadpoolctl import threadpool_limits

    threadpool_limits(config.server.blas_threads, user_api="blas")
    service = ReplicaService(config)
    service.start()
    gc.collect()
    gc.freeze()  # what start-up loaded lives as long as the process (as in the server)
    try:
        import uvloop

        uvloop.run(serve(service, args.socket, args.leader_pid))
    finally:
        service.close()
        _logger.info("replica.stopped", pid=os.getpid())
