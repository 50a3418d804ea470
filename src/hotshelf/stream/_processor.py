"""``StreamProcessor``: the events and catalog topics in, ``StreamState`` out, exactly once.

On start it loads the latest snapshot (``data_dir/stream/snapshot.msgpack``) and seeks
both consumers to the offsets stored with it, so every record below them is in the
state and every record from them on is not: nothing is applied twice or skipped.
With no usable snapshot (none, another version, other settings) it rebuilds from
the start of the log. Then it loops: poll, merge the topics (``_merge``), check each
event with the bot filter, apply, and every ``snapshot_interval_s`` (or
``snapshot_every_records``; never more often than ten times the last snapshot's
duration, so a large state spends at most ~10% of the time on them) write a
snapshot and only then commit the consumers' offsets; those commits are for lag and
retention, restarts trust the snapshot.

The item -> category map is the processor's own, built from the catalog topic in
merge order and saved in the snapshot, so lookups during a replay match.

Queries run in other threads: ``with processor.reading() as state:``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import msgspec
import structlog

from hotshelf.config import Config
from hotshelf.errors import HotshelfError
from hotshelf.events import CatalogOp, StoredEvent, decode_catalog_change
from hotshelf.log import EventLog, LogConsumer, LogRecord
from hotshelf.stream._bot_filter import BotRecord
from hotshelf.stream._freshness import FreshnessSummary, FreshnessTracker
from hotshelf.stream._merge import Source, TopicMerge
from hotshelf.stream._snapshot import (
    SNAPSHOT_VERSION,
    Snapshot,
    SnapshotStore,
    decode_snapshot,
    encode_snapshot,
    settings_fingerprint,
)
from hotshelf.stream._state import StreamState

__all__ = ["BotFilterFactory", "BotFilterLike", "StreamProcessor", "default_bot_filter_factory"]

_logger = structlog.get_logger("hotshelf.stream")
GROUP = "stream"
# decode_stored_event's decoder, called directly: one Python call less per event
_event_decoder = msgspec.msgpack.Decoder(StoredEvent)


class VerdictLike(Protocol):
    @property
    def is_bot(self) -> bool: ...


class BotFilterLike(Protocol):
    """What the processor needs of a bot filter (``hotshelf.stream.BotFilter``)."""

    def check(self, event: StoredEvent) -> VerdictLike: ...

    def to_state(self) -> object: ...

    def verdicts(self, limit: int = 100) -> list[BotRecord]: ...

    def stats(self) -> dict[str, int]: ...


# Given the filter state saved in the snapshot (None when starting afresh), a filter.
BotFilterFactory = Callable[[object | None], BotFilterLike]


def default_bot_filter_factory(config: Config) -> BotFilterFactory:
    """``BotFilter`` with ``config.bots``, fresh or from its saved state."""
    from hotshelf.stream._bot_filter import BotFilter

    salt = config.events.ip_hash_salt

    def make(state: object | None) -> BotFilterLike:
        if state is None:
            return BotFilter(config.bots, ip_hash_salt=salt)
        return BotFilter.from_state(config.bots, state, ip_hash_salt=salt)

    return make


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class _Restored(NamedTuple):
    state: StreamState
    bots: object | None
    categories: dict[str, tuple[str, ...]]
    offsets: dict[str, int]


class StreamProcessor:
    """Consumes both topics into one ``StreamState``; see the module docstring."""

    def __init__(
        self,
        config: Config,
        events_log: EventLog,
        catalog_log: EventLog,
        bot_filter_factory: BotFilterFactory | None = None,
        *,
        group: str = GROUP,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self._logs = {"events": events_log, "catalog": catalog_log}
        self._clock = clock or _wall_clock_ms
        self._settings = settings_fingerprint(config, bot_filter_factory is not None)
        self._store = SnapshotStore(config.data_path / "stream", fsync=config.log.fsync)
        self._lock = threading.RLock()
        self._paths: dict[tuple[str, ...], tuple[str, ...]] = {}
        restored = self._restore()
        self._bots: BotFilterLike | None = None
        if bot_filter_factory is not None:
            try:
                self._bots = bot_filter_factory(restored.bots)
            except (HotshelfError, ValueError) as exc:
                _logger.error("stream.bot_state_unreadable", error=str(exc), action="rebuild")
                restored = self._fresh()
                self._bots = bot_filter_factory(None)
        self._state = restored.state
        self._categories = restored.categories
        consumers: list[LogConsumer] = []
        try:
            sources = []
            for topic, log in self._logs.items():
                consumer = log.consumer(group)
                consumers.append(consumer)
                offset = self._seek(consumer, log, restored.offsets[topic], topic)
                sources.append(Source(topic, log, consumer, offset, self._clock))
        except BaseException:
            for consumer in consumers:
                consumer.close()
            raise
        events, catalog = sources
        self._merge = TopicMerge(events, catalog, config.stream.catalog_grace_ms)
        self.freshness = FreshnessTracker(config.stream.freshness_samples)
        self.skipped = 0  # records that did not decode
        self._since_snapshot = 0
        self._snapshot_ms = 0  # how long the last snapshot took
        self._last_snapshot_ms = self._clock()
        self._closed = False

    # -- starting --------------------------------------------------------------

    def _fresh(self) -> _Restored:
        return _Restored(StreamState(self.config.stream), None, {}, {"events": 0, "catalog": 0})

    def _restore(self) -> _Restored:
        data = self._store.read()
        if data is None:
            return self._fresh()
        try:
            snapshot = decode_snapshot(data)
            if snapshot.version != SNAPSHOT_VERSION or snapshot.settings != self._settings:
                _logger.warning(
                    "stream.snapshot_outdated", path=str(self._store.path), action="rebuild"
                )
                return self._fresh()
            state = StreamState.from_state(self.config.stream, snapshot.state)
        except (msgspec.DecodeError, ValueError) as exc:
            _logger.error("stream.snapshot_unreadable", error=str(exc), action="rebuild")
            return self._fresh()
        offsets = {topic: snapshot.offsets.get(topic, 0) for topic in self._logs}
        for topic, offset in offsets.items():
            if offset > self._logs[topic].end_offset:
                # It reflects records this log does not have: not this log's snapshot.
                _logger.error(
                    "stream.snapshot_ahead_of_log", topic=topic, offset=offset, action="rebuild"
                )
                return self._fresh()
        categories = {item: self._intern(path) for item, path in snapshot.categories.items()}
        return _Restored(state, snapshot.bots, categories, offsets)

    def _seek(self, consumer: LogConsumer, log: EventLog, offset: int, topic: str) -> int:
        if offset < log.start_offset:
            _logger.warning(
                "stream.behind_retention", topic=topic, offset=offset, start=log.start_offset
            )
            offset = log.start_offset
        consumer.seek(offset)
        return offset

    def _intern(self, path: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        key = tuple(path)
        return self._paths.setdefault(key, key)

    # -- processing ------------------------------------------------------------

    def run_once(self, max_records: int = 1000, timeout_s: float = 0.0) -> int:
        """Poll, apply up to ``max_records`` records, snapshot when due; returns records applied."""
        merge = self._merge
        if len(merge.events.buffer) < max_records:
            busy = merge.events.buffer or merge.catalog.buffer
            merge.events.poll(max_records, 0.0 if busy else timeout_s)
        received: list[int] = []
        with self._lock:
            applied = 0
            for is_catalog, records in merge.take(max_records):
                if is_catalog:
                    self._apply_catalog(records)
                else:
                    self._apply_events(records, received)
                applied += len(records)
        if received:
            self.freshness.observe(self._clock(), received)
        self._since_snapshot += applied
        if self._snapshot_due():
            self.snapshot()
        return applied

    def _apply_events(self, records: list[LogRecord], received: list[int]) -> None:
        apply = self._state.apply
        category_of = self._categories.get
        check = None if self._bots is None else self._bots.check
        decode = _event_decoder.decode
        for record in records:
            try:
                event = decode(record.value)
            except msgspec.DecodeError as exc:
                self._skip(record, "events", exc)
                continue
            is_bot = False if check is None else check(event).is_bot
            item = event.item_id
            apply(
                event, None if item is None else category_of(item), is_bot, category_of=category_of
            )
            if event.lane == "rt":
                received.append(event.received_ms)

    def _apply_catalog(self, records: list[LogRecord]) -> None:
        for record in records:
            try:
                change = decode_catalog_change(record.value)
            except msgspec.DecodeError as exc:
                self._skip(record, "catalog", exc)
                continue
            if change.op is CatalogOp.DELETE:
                self._categories.pop(change.item_id, None)
            elif change.item is not None:
                self._categories[change.item_id] = self._intern(change.item.category)

    def _skip(self, record: LogRecord, topic: str, exc: Exception) -> None:
        # A checksummed record that does not decode is a writer's bug; skipping it is
        # deterministic, so replays skip it too.
        self.skipped += 1
        _logger.error("stream.bad_record", topic=topic, offset=record.offset, error=str(exc))

    def _snapshot_due(self) -> bool:
        if not self._since_snapshot:
            return False
        if self._since_snapshot >= self.config.stream.snapshot_every_records:
            return True
        # A big state takes a while to write: keep snapshots under ~10% of the time.
        interval_ms = max(self.config.stream.snapshot_interval_s * 1000, 10 * self._snapshot_ms)
        return self._clock() - self._last_snapshot_ms >= interval_ms

    def caught_up(self) -> bool:
        """Whether every record both logs hold now has been applied."""
        return all(self.lag().get(topic) == 0 for topic in self._logs)

    def catch_up(self, max_records: int = 1000, timeout_s: float = 30.0) -> int:
        """Apply records until both topics are caught up (or ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while not self.caught_up() and time.monotonic() < deadline:
            applied = self.run_once(max_records)
            total += applied
            if not applied:
                time.sleep(0.005)
        return total

    def run(self, stop: threading.Event, max_records: int = 1000) -> None:
        """Process until ``stop`` is set, then write a last snapshot (the service thread)."""
        while not stop.is_set():
            if not self.run_once(max_records, timeout_s=0.1) and self._merge.waiting:
                stop.wait(0.01)  # events wait out the catalog grace; do not spin
        self.snapshot()

    # -- snapshots -------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        """The snapshot of the state as it is now (what ``snapshot`` would write)."""
        with self._lock:
            snapshot = Snapshot(
                version=SNAPSHOT_VERSION,
                settings=self._settings,
                offsets=self.offsets(),
                bots=None if self._bots is None else self._bots.to_state(),
                categories={item: list(path) for item, path in self._categories.items()},
                state=self._state.to_state(),
            )
            return encode_snapshot(snapshot)

    def snapshot(self) -> int:
        """Write a snapshot, then commit both consumers to its offsets; returns its size."""
        began = time.perf_counter_ns()
        with self._lock:
            offsets = self.offsets()
            data = self.snapshot_bytes()
        self._store.write(data)
        merge = self._merge
        for source in (merge.events, merge.catalog):
            source.consumer.commit(offsets[source.topic])
        self._since_snapshot = 0
        self._snapshot_ms = (time.perf_counter_ns() - began) // 1_000_000
        self._last_snapshot_ms = self._clock()
        return len(data)

    # -- reading ---------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[StreamState]:
        """The state, with processing held off while the block reads it."""
        with self._lock:
            yield self._state

    @property
    def state(self) -> StreamState:
        """The state itself: read it only with ``reading()`` while the processor runs."""
        return self._state

    def offsets(self) -> dict[str, int]:
        """The next offset to apply per topic: the state reflects every record below."""
        merge = self._merge
        return {s.topic: s.next_offset for s in (merge.events, merge.catalog)}

    def lag(self) -> dict[str, int]:
        """Records each topic holds that the state does not reflect yet."""
        return {
            topic: max(0, self._logs[topic].end_offset - offset)
            for topic, offset in self.offsets().items()
        }

    def freshness_summary(self) -> FreshnessSummary:
        return self.freshness.summary()

    def bot_verdicts(self, limit: int = 100) -> list[BotRecord]:
        """Visitors the bot filter flags now, most recently seen first (none when off)."""
        with self._lock:
            return [] if self._bots is None else self._bots.verdicts(limit)

    def bot_stats(self) -> dict[str, int]:
        """Events the bot filter checked and flagged, and flagged events per reason."""
        with self._lock:
            return {} if self._bots is None else self._bots.stats()

    def stats(self) -> dict[str, int]:
        """Counters for metrics: lag per topic, records skipped or redelivered, the last
        snapshot's duration, and the sizes of the state's bounded tables."""
        merge = self._merge
        out = {f"lag_{topic}": n for topic, n in self.lag().items()}
        out.update(
            skipped=self.skipped,
            redelivered=merge.events.redelivered + merge.catalog.redelivered,
            snapshot_ms=self._snapshot_ms,
        )
        with self._lock:
            out.update(self._state.stats())
        return out

    def close(self, *, snapshot: bool = True) -> None:
        """Write a last snapshot (unless told not to) and release the consumers."""
        if self._closed:
            return
        try:
            if snapshot and self._since_snapshot:
                self.snapshot()
        finally:
            self._closed = True
            self._merge.events.consumer.close()
            self._merge.catalog.consumer.close()
