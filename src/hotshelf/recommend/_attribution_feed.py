"""``AttributionFeed``: the events log, tailed into ``Attribution`` by a daemon thread.

Attribution keeps no state on disk: at every start the feed reads the events log from
its first kept offset, so the numbers are rebuilt by replay (they cover what retention
keeps) and every event is seen however it arrived: HTTP ingest, another process writing
the Redis stream, or ``hotshelf ingest`` into the batch lane's ``events.batch``.

The two topics are merged in causal order, not by arrival at this thread: before a
chunk of the batch log is applied, the events log is applied up to the end it had
*after* that chunk was read. An impression logged before an imported click was appended
is then always applied before the click, live and on replay alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from hotshelf._closing import Closeable
from hotshelf.errors import CorruptLogError, OffsetOutOfRangeError, UnavailableError
from hotshelf.events import StoredEvent, decode_stored_event
from hotshelf.monitoring import get_logger
from hotshelf.recommend._online_metrics import OnlineMetrics, OnlineMetricsCollector

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from hotshelf.log import EventLog, LogRecord
    from hotshelf.recommend._attribution import Attribution

__all__ = ["AttributionFeed", "EventHook"]

# Called with (topic, offset, event) for every event the feed applies, in feed order.
EventHook = Callable[[str, int, StoredEvent], None]

_logger = get_logger("hotshelf.recommend")

# The feed's thread applies a few records at a time and sleeps YIELD_S between chunks:
# LIVE_CHUNK while live (at most LIVE_LAG records behind), REPLAY_CHUNK further behind
# (the replay at start, a burst, a batch load). Applying an event is pure Python under
# the GIL (~40 µs with the recommender's hook), and a request that arrives while
# another thread holds the GIL waits until that thread lets go, or for the 5 ms switch
# interval: a poll's 50 ms of impressions in one go kept requests waiting ~2 ms, and a
# replay in whole 1,000-record chunks put the p99 of requests served meanwhile at
# 30-60 ms. A real sleep hands the GIL to a waiting event loop at once (a ``sleep(0)``
# would take it straight back). ``catch_up`` (no requests to share with) is unpaced.
# The thread reads PACED_READ records at a time and applies them in those chunks: a
# read has a cost of its own (a lock, a file read, a frame's checks), ~10 µs a record
# in reads of 8 against ~2.5 in reads of 64, and a read of 64 holds the GIL ~0.2 ms.
LIVE_LAG = 2_000
LIVE_CHUNK = 8
REPLAY_CHUNK = 32
PACED_READ = 64
YIELD_S = 0.0002


class _Cursor:
    """Where the feed is in one log."""

    __slots__ = ("log", "next", "topic")

    def __init__(self, log: EventLog, topic: str) -> None:
        self.log = log
        self.topic = topic
        self.next = 0

    def lag(self) -> int:
        return max(0, self.log.end_offset - max(self.next, self.log.start_offset))


class AttributionFeed(Closeable):
    """Applies the events log (and the batch lane's, when given) to ``attribution``.

    ``start`` runs it in a daemon thread that sleeps ``idle_s`` whenever it is caught up;
    ``catch_up`` does one synchronous pass; ``close`` stops and joins the thread (the
    logs stay open: their owner closes them, after this). ``on_event`` sees every event
    too, with its topic and offset (the recommender drops the lists it changes).
    """

    def __init__(
        self,
        events_log: EventLog,
        attribution: Attribution | None,
        *,
        batch_log: EventLog | None = None,
        batch_size: int = 1000,
        idle_s: float = 0.05,
        registry: CollectorRegistry | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        self.attribution = attribution
        self._on_event = on_event
        self._events = _Cursor(events_log, "events")
        self._batch = None if batch_log is None else _Cursor(batch_log, "events.batch")
        self._batch_size = batch_size
        self._idle_s = idle_s
        self._lock = threading.Lock()  # one pass at a time: the thread's or catch_up's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.skipped = 0  # records that did not decode as events
        self.failure: str | None = None  # the last pass's error, None once one succeeds
        if registry is not None and attribution is not None:
            OnlineMetricsCollector(attribution.snapshot, lambda: self.lag).register(registry)

    @property
    def lag(self) -> int:
        """Records the logs hold that are not applied yet."""
        cursors = [self._events] if self._batch is None else [self._events, self._batch]
        return sum(cursor.lag() for cursor in cursors)

    @property
    def applied(self) -> int:
        """The events log's next offset to apply: every record below it is applied."""
        return self._events.next

    def snapshot(self) -> OnlineMetrics:
        """The attribution's numbers, with how many records they do not reflect yet."""
        lag = self.lag
        if self.attribution is None:
            raise UnavailableError("this feed attributes nothing (a recommend replica's)")
        return msgspec.structs.replace(self.attribution.snapshot(), lag_records=lag)

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Follow the logs in a daemon thread, from their first kept offsets."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._follow, name="hotshelf-attribution", daemon=True
        )
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread after its current chunk and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                applied = self._pass(paced=True)
            except Exception as exc:  # a closed or unreachable log: retry, say why once
                reason = f"{type(exc).__name__}: {exc}"
                if reason != self.failure:
                    _logger.exception("attribution.feed_failed")
                self.failure = reason
                applied = 0
            else:
                self.failure = None
            if not applied:
                self._stop.wait(self._idle_s)

    # -- reading ------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply what the logs hold now; returns how many records were read."""
        return self._pass(paced=False)

    def _pass(self, *, paced: bool) -> int:
        """One pass over the logs; ``paced``: the thread's, chunks apart (see
        ``LIVE_CHUNK``)."""
        with self._lock:
            if self._batch is None:
                return self._drain(self._events, self._events.log.end_offset, paced=paced)
            chunk = self._read(self._batch)
            read = self._drain(self._events, self._events.log.end_offset, paced=paced)
            if paced:  # a batch load: paced too
                self._apply_paced(chunk, self._batch, lambda _: REPLAY_CHUNK, pause_first=False)
            else:
                self._apply(chunk, self._batch)
            return read + len(chunk)

    def _drain(self, cursor: _Cursor, end: int, *, paced: bool) -> int:
        """Apply ``cursor``'s log up to ``end``, a read at a time, until stopped; paced,
        each read's records a chunk at a time with a sleep between chunks (none after
        the last): a read once taken is applied whole, so a stop loses nothing."""
        def size(offset: int) -> int:
            return LIVE_CHUNK if end - offset <= LIVE_LAG else REPLAY_CHUNK

        read = 0
        while cursor.next < end and not self._stop.is_set():
            records = self._read(cursor, PACED_READ if paced else end - cursor.next)
            if not records:
                break
            if paced:
                self._apply_paced(records, cursor, size, pause_first=read > 0)
            else:
                self._apply(records, cursor)
            read += len(records)
        return read

    def _apply_paced(
        self,
        records: list[LogRecord],
        cursor: _Cursor,
        size: Callable[[int], int],
        *,
        pause_first: bool,
    ) -> None:
        """Apply ``records`` in chunks (``size`` of the chunk starting at an offset),
        sleeping ``YIELD_S`` between them (and before the first, ``pause_first``)."""
        at = 0
        while at < len(records):
            if at or pause_first:
                self._stop.wait(YIELD_S)
            step = size(records[at].offset)
            self._apply(records[at : at + step], cursor)
            at += step

    def _read(self, cursor: _Cursor, limit: int | None = None) -> list[LogRecord]:
        """The next chunk of ``cursor``'s log, past retention and damage. The cursor moves
        past them here, and past the records only as ``_apply`` applies them: ``lag``
        and ``applied`` never count a record read and not yet applied (a replica's
        read-your-writes waits on ``applied``)."""
        log = cursor.log
        count = self._batch_size if limit is None else min(limit, self._batch_size)
        while True:
            if cursor.next < log.start_offset:
                _logger.warning("attribution.records_gone", topic=cursor.topic,
                                lost=log.start_offset - cursor.next)  # fmt: skip
                cursor.next = log.start_offset
            try:
                records = log.read(cursor.next, count)
            except OffsetOutOfRangeError:
                if cursor.next >= log.start_offset:
                    raise  # not retention moving the start while we read
                continue
            except CorruptLogError as exc:
                count = self._around_damage(cursor, exc, count)
                continue
            return records

    def _around_damage(self, cursor: _Cursor, exc: CorruptLogError, count: int) -> int:
        """The count to read next: the good records before the damage, or (the damage
        first) none, once the cursor has moved past it. Raises when that cannot be done."""
        if exc.first > cursor.next and exc.first - cursor.next < count:
            return exc.first - cursor.next
        if exc.first != cursor.next or exc.last is None:
            raise exc  # its extent is unknown: the next pass tries again
        _logger.error("attribution.records_damaged", topic=cursor.topic,
                      first=exc.first, last=exc.last)  # fmt: skip
        cursor.next = exc.last + 1
        return count

    def _apply(self, records: list[LogRecord], cursor: _Cursor) -> None:
        """Apply ``records`` (the next of ``cursor``'s log) and move the cursor past them."""
        if not records:
            return
        events: list[StoredEvent] = []
        hook = self._on_event
        topic = cursor.topic
        for record in records:
            try:
                event = decode_stored_event(record.value)
            except msgspec.DecodeError as exc:
                # a writer's bug; skipping is deterministic, so a replay skips it too
                self.skipped += 1
                _logger.error("attribution.bad_record", offset=record.offset, error=str(exc))
                continue
            events.append(event)
            if hook is not None:
                hook(topic, record.offset, event)
        if self.attribution is not None:
            self.attribution.apply_many(events)
        cursor.next = records[-1].offset + 1
