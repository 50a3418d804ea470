"""``ReplicaPool``: the server's side of its recommend replicas (``_replica``).

With ``recommend.replicas = N`` the server starts N replica processes after its own
start, each on a Unix socket in a private temporary directory, and forwards
``POST /v1/recommend`` bodies to them: the server's event loop keeps HTTP, ingest and
the impressions' appends, and the recommender's work runs on the other cores.

* **Which one answers.** The ready replica with the fewest requests in flight; when
  even that one has ``recommend.replica_max_in_flight``, or none is ready (starting,
  restarting), the server answers itself, as it does without replicas. A replica that
  fails a request (its connection drops, it answers late or with a server error) is
  answered for by the server too: the shopper never sees a replica's trouble.
* **Read-your-writes.** For every event it appends, the server remembers the events
  log's end after it under the event's user, cookie and session ids. A request
  forwarded for any of them carries the largest such end, and the replica applies the
  log up to there before it answers (``CATCH_UP_TIMEOUT_S``, else the server answers).
  So a purchase is excluded from the very next request, wherever it is answered.
  An end is forgotten once every replica reports having applied it; while none is
  up, at most ``_MAX_REMEMBERED`` ends are kept and older ones raise a floor that
  every request waits for instead.
* **Impressions.** A replica sends the encoded impression with its answer, and the
  server appends it (``ImpressionWriter``), as for the lists it computes itself.
* **Supervision.** A replica that exits or drops its connection is restarted, after
  1 s and then twice as long each time up to 30 s while it keeps failing. Replicas
  exit with the server (SIGTERM at shutdown; by themselves if it dies).

Counted in ``hotshelf_recommend_answered{by}`` (``replica``, ``server``,
``fallback``: a replica's failure answered by the server) and
``hotshelf_recommend_replicas_ready``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec
from prometheus_client import Counter, Gauge

from hotshelf.monitoring import get_logger
from hotshelf.serving._replica import STATUS_LAGGING, FrameReader, encode_frame

if TYPE_CHECKING:
    from hotshelf.config import Config
    from hotshelf.events import StoredEvent
    from hotshelf.monitoring import Metrics
    from hotshelf.recommend import RecommendRequest

__all__ = ["ReplicaAnswer", "ReplicaPool"]

_logger = get_logger("hotshelf.replica")
ANSWER_TIMEOUT_S = 2.0  # a replica's answer later than this is given up on (and ignored)
_MAX_REMEMBERED = 100_000
_RESTART_FIRST_S, _RESTART_MAX_S = 1.0, 30.0
_CONNECT_POLL_S = 0.05
_EXPIRE_EVERY_S = 0.25
_STOP_TIMEOUT_S = 10.0
_Key = tuple[str, str]


class ReplicaAnswer(msgspec.Struct, frozen=True):
    """A replica's answer: the status and JSON body to send, and with a list (200)
    its encoded impression event."""

    status: int
    body: bytes
    impression: bytes | None


class _LostError(Exception):
    """The replica's connection dropped with the request in flight."""


class _Link(asyncio.Protocol):
    """One replica: its process, its connection and the requests in flight on it."""

    def __init__(self, pool: ReplicaPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.process: asyncio.subprocess.Process | None = None
        self.transport: asyncio.Transport | None = None
        self.frames = FrameReader()
        self.pending: dict[int, asyncio.Future[list[Any]]] = {}
        self.deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self.applied = 0
        self.ready = False
        self.lost: asyncio.Event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    # -- supervision ----------------------------------------------------------------------

    async def run(self) -> None:
        """Start the replica, serve through it, restart it when it fails; until cancelled."""
        delay = _RESTART_FIRST_S
        while True:
            started = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # logged; the replica is started again
                _logger.exception("replica.failed", replica=self.number)
            finally:
                self._down()
            if time.monotonic() - started > 60:
                delay = _RESTART_FIRST_S  # it served a while: this failure is a new one
            _logger.warning("replica.restarting", replica=self.number, in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESTART_MAX_S)

    @property
    def socket_path(self) -> str:
        return str(self.pool.directory / f"replica-{self.number}.sock")

    async def _run_once(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.process = await asyncio.create_subprocess_exec(
            # not ``-m``: the package imports ``_replica`` before it could run as __main__
            sys.executable, "-c", "from hotshelf.serving._replica import main; main()",
            "--config", str(self.pool.directory / "config.json"), "--socket", self.socket_path,
            "--leader-pid", str(os.getpid()),
        )  # fmt: skip
        exited = asyncio.ensure_future(self.process.wait())
        expiring = asyncio.ensure_future(self.expire())
        try:
            while not await self._connect():
                if exited.done():
                    raise RuntimeError(f"replica exited with {exited.result()} while starting")
                await asyncio.sleep(_CONNECT_POLL_S)
            self.lost.clear()
            self.ready = True
            self.pool.ready_changed()
            _logger.info("replica.ready", replica=self.number, pid=self.process.pid)
            lost = asyncio.ensure_future(self.lost.wait())
            await asyncio.wait({exited, lost}, return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            if exited.done():
                raise RuntimeError(f"replica exited with {exited.result()}")
            raise RuntimeError("replica's connection dropped")
        finally:
            expiring.cancel()
            await self._stop_process(exited)

    async def _connect(self) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(lambda: self, self.socket_path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        return True

    async def _stop_process(self, exited: asyncio.Future[int]) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(exited), _STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await exited
        self.process = None

    def _down(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self.ready:
            self.ready = False
            self.pool.ready_changed()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(_LostError())
        self.pending.clear()
        self.deadlines.clear()

    # -- the connection (asyncio.Protocol) ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self.frames = FrameReader()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost.set()
        self._down()

    def data_received(self, data: bytes) -> None:
        try:
            answers = list(self.frames.feed(data))
        except (ValueError, msgspec.DecodeError) as exc:
            _logger.error("replica.bad_frame", replica=self.number, error=str(exc))
            if self.transport is not None:
                self.transport.close()
            return
        for answer in answers:
            self.applied = max(self.applied, answer[2])
            future = self.pending.pop(answer[0], None)
            if future is not None and not future.done():
                future.set_result(answer)
        self.pool.forget_applied()

    # -- requests -------------------------------------------------------------------------

    async def ask(self, rid: int, need: int, catalog_need: int, body: bytes) -> list[Any]:
        """The replica's answer frame; ``_LostError`` or ``TimeoutError`` when none came."""
        transport = self.transport
        if transport is None:
            raise _LostError()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self.pending[rid] = future
        self.deadlines.append((loop.time() + ANSWER_TIMEOUT_S, rid))
        transport.write(encode_frame([rid, need, catalog_need, body]))
        try:
            return await future
        finally:
            self.pending.pop(rid, None)

    async def expire(self) -> None:
        """Fail requests unanswered after ``ANSWER_TIMEOUT_S`` (``TimeoutError``), every
        ``_EXPIRE_EVERY_S``: one timer for all, not one per request."""
        loop = asyncio.get_running_loop()
        deadlines = self.deadlines
        while True:
            await asyncio.sleep(_EXPIRE_EVERY_S)
            now = loop.time()
            while deadlines and deadlines[0][0] <= now:
                _, rid = deadlines.popleft()
                future = self.pending.pop(rid, None)
                if future is not None and not future.done():
                    future.set_exception(TimeoutError())


class ReplicaPool:
    """Starts ``config.recommend.replicas`` replicas and forwards requests to them."""

    def __init__(self, config: Config, metrics: Metrics, catalog_end: Callable[[], int]) -> None:
        self.config = config
        self._catalog_end = catalog_end
        self.count = config.recommend.replicas
        self.max_in_flight = config.recommend.replica_max_in_flight
        self.directory = Path()  # a private temporary one, from ``start``
        self.links = [_Link(self, number) for number in range(self.count)]
        self._ready: list[_Link] = []
        self._next_id = 0
        # read-your-writes: the events log's end after each visitor's last events
        self._ends: dict[_Key, int] = {}
        self._order: collections.deque[tuple[int, _Key]] = collections.deque()
        self._floor = 0
        registry = metrics.registry
        answered = Counter(
            "hotshelf_recommend_answered", "Recommendation requests by who answered them.",
            ["by"], registry=registry,
        )  # fmt: skip
        self._by_replica = answered.labels("replica")
        self._by_server = answered.labels("server")
        self._by_fallback = answered.labels("fallback")
        self._ready_gauge = Gauge(
            "hotshelf_recommend_replicas_ready", "Recommend replicas taking requests.",
            registry=registry,
        )  # fmt: skip

    def start(self) -> None:
        """Start the replicas in the background (the server serves alone meanwhile)."""
        self.directory = Path(tempfile.mkdtemp(prefix="hotshelf-replicas-"))
        (self.directory / "config.json").write_bytes(msgspec.json.encode(self.config))
        for link in self.links:
            link.task = asyncio.ensure_future(link.run())

    async def close(self) -> None:
        """Stop every replica and wait for it to exit."""
        for link in self.links:
            if link.task is not None:
                link.task.cancel()
        for link in self.links:
            if link.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await link.task
        if self.directory != Path():
            shutil.rmtree(self.directory, ignore_errors=True)

    def ready_changed(self) -> None:
        self._ready = [link for link in self.links if link.ready]
        self._ready_gauge.set(len(self._ready))

    @property
    def ready(self) -> int:
        """Replicas taking requests now."""
        return len(self._ready)

    # -- read-your-writes -----------------------------------------------------------------

    def note_appended(self, events: Iterable[StoredEvent], end: int) -> None:
        """``events`` are in the events log below ``end``."""
        ends, order = self._ends, self._order
        for event in events:
            for key in _keys(event.user_id, event.cookie_id, event.session_id):
                ends[key] = end
                order.append((end, key))
        while len(order) > _MAX_REMEMBERED:
            old_end, key = order.popleft()
            self._floor = max(self._floor, old_end)
            if ends.get(key) == old_end:
                del ends[key]

    def forget_applied(self) -> None:
        """Drop the ends every ready replica has applied."""
        order = self._order
        if not order or not self._ready:
            return
        applied = min(link.applied for link in self._ready)
        ends = self._ends
        while order and order[0][0] <= applied:
            end, key = order.popleft()
            if ends.get(key) == end:
                del ends[key]

    def _need(self, request: RecommendRequest) -> int:
        ends = self._ends
        need = self._floor
        if ends:
            for key in _keys(request.user_id, request.cookie_id, request.session_id):
                need = max(need, ends.get(key, 0))
        return need

    # -- requests -------------------------------------------------------------------------

    async def recommend(self, request: RecommendRequest, body: bytes) -> ReplicaAnswer | None:
        """A replica's answer to ``request`` (``body`` as received): a list, or a
        request error (4xx); None: the server answers it itself (no replica free, or
        the one asked failed)."""
        ready = self._ready
        if not ready:
            self._by_server.inc()
            return None
        link = min(ready, key=lambda r: len(r.pending)) if len(ready) > 1 else ready[0]
        if len(link.pending) >= self.max_in_flight:
            self._by_server.inc()
            return None
        self._next_id += 1
        try:
            _, status, _, payload, impression = await link.ask(
                self._next_id, self._need(request), self._catalog_end(), body
            )
        except (_LostError, TimeoutError):
            status, payload, impression = -1, b"", None
        if (status == 200 and impression is not None) or 400 <= status < 500:
            self._by_replica.inc()
            return ReplicaAnswer(status, payload, impression)
        if status != STATUS_LAGGING:
            _logger.warning("replica.answer_failed", replica=link.number, status=status,
                            body=payload[:200].decode(errors="replace"))  # fmt: skip
        self._by_fallback.inc()
        return None


def _keys(user_id: str | None, cookie_id: str | None, session_id: str | None) -> list[_Key]:
    keys = []
    if user_id is not None:
        keys.append(("u", user_id))
    if cookie_id is not None:
        keys.append(("c", cookie_id))
    if session_id is not None:
        keys.append(("s", session_id))
    return keys
