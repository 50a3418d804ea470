"""``StreamProcessor``: the events and catalog topics in, ``StreamState`` out, exactly once.

On start it loads the latest snapshot (``data_dir/stream/``, ``_snapshot``) and seeks
every consumer to the offsets stored with it, so every record below them is in the
state and every record from them on is not: nothing is applied twice or skipped.
With no usable snapshot (none, another version, other settings) it rebuilds from
the start of the log. Then it loops: poll, merge each lane's topic with the catalog
(``_merge``), check each event with the lane's bot filter, apply, and every
``snapshot_interval_s`` (or ``snapshot_every_records``; never more often than ten
times the last snapshot's duration, so a large state spends at most ~10% of the time
on them) write a snapshot and only then commit the consumers' offsets; those commits
are for lag and retention, restarts trust the snapshot.

Lanes (``_lane``): the real-time lane (topic ``events``) always goes first; the
batch lane (``events.batch``, when a batch log is given) gets what the real-time
lane leaves of each round and never less than ``batch_min_share`` of it, so a bulk
import neither delays live events nor starves. Each lane's state depends on its own
topic and the catalog only, so the interleaving never changes what a replay gives.

Followers: with ``write_snapshots=False`` over ``LogFollower``s, a processor in another
process restores the writer's latest snapshot and follows its logs, to the same state
(``tests/stream/test_processor.py``), writing nothing.

Queries run in other threads: ``with processor.reading() as view:`` (a ``StateView``
over the lanes' states).

Scale-out (``_partition``): with ``partition=(i, n)`` the processor is one of ``n``
processes sharing the stream by visitor key. Each reads the whole log (decoding an
event costs ~1 us) but checks and applies only its own visitors' events (~10 us
each), so processing splits ``n`` ways and reading does not. Each partition has its
own consumer groups (``stream.p<i>of<n>``), its own snapshot (the partition is part
of the settings fingerprint, so no snapshot is restored under another partitioning)
and, with ``snapshot_store=RedisSnapshotStore(...)``, keeps it in Redis, where
``RemoteState`` merges every partition's state for the service. Bot behaviour keyed
by IP is judged per partition, on that partition's visitors only; the spike guard's
floor is split between the partitions (``_partition.partition_config``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import msgspec
import structlog

from hotshelf.config import Config
from hotshelf.errors import ConflictError, HotshelfError
from hotshelf.log import EventLog, LogConsumer
from hotshelf.stream._answers import BotRecord
from hotshelf.stream._freshness import FreshnessSummary, FreshnessTracker
from hotshelf.stream._lane import LANE_TOPICS, BotFilterLike, Lane
from hotshelf.stream._merge import Source, TopicMerge
from hotshelf.stream._partition import Partition, check_partition, partition_config
from hotshelf.stream._snapshot import (
    LaneSnapshot,
    SnapshotStorage,
    SnapshotStore,
    decode_snapshot,
    encode_lane,
    encode_snapshot,
    settings_fingerprint,
)
from hotshelf.stream._state import StreamState
from hotshelf.stream._view import StateView

__all__ = ["BotFilterFactory", "BotFilterLike", "StreamProcessor", "default_bot_filter_factory"]

_logger = structlog.get_logger("hotshelf.stream")
GROUP = "stream"


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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a snapshot is built: its many new lists would set off full
    collections over the whole state (measured: about half of a snapshot's time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# Records applied per hold of the query lock (~1 ms of work with the bot filter).
_LOCK_CHUNK = 64


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class _Restored(NamedTuple):
    state: StreamState
    bots: BotFilterLike | None
    categories: dict[str, tuple[str, ...]]
    offsets: dict[str, int]


class StreamProcessor:
    """Consumes the lanes' topics into one ``StreamState`` each; see the module docstring."""

    def __init__(
        self,
        config: Config,
        events_log: EventLog,
        catalog_log: EventLog,
        bot_filter_factory: BotFilterFactory | None = None,
        *,
        batch_log: EventLog | None = None,
        group: str = GROUP,
        clock: Callable[[], int] | None = None,
        partition: tuple[int, int] | None = None,
        snapshot_store: SnapshotStorage | None = None,
        write_snapshots: bool = True,
    ) -> None:
        self.config = config
        # False: a follower of another process's logs (``LogFollower``s) restores that
        # process's snapshot and follows, but never writes one or commits: both belong
        # to the writer, and the follower's state is rebuilt from them on every start.
        self.write_snapshots = write_snapshots
        self.partition: Partition | None = None if partition is None else check_partition(partition)
        self._pair = None if self.partition is None else self.partition.pair
        self._state_config = partition_config(config.stream, self.partition)
        self._clock = clock or _wall_clock_ms
        self._settings = settings_fingerprint(config, bot_filter_factory is not None, self._pair)
        self._store = snapshot_store or self._file_store()
        if self.partition is not None:
            # Its own groups: partitions must not split the log between them.
            group = f"{group}.{self.partition.name}"
        self._factory = bot_filter_factory
        self._lock = threading.RLock()
        self._queries_waiting = 0  # queries blocked on the lock (``reading``)
        self._waiting_lock = threading.Lock()
        self._writer: int | None = None  # the thread in run(): the state's only writer
        self._paths: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._catalog_log = catalog_log
        logs = {"rt": events_log} if batch_log is None else {"rt": events_log, "batch": batch_log}
        saved = self._read_snapshot()
        self.lanes: list[Lane] = []
        try:
            for name, log in logs.items():
                lane_group = group if name == "rt" else f"{group}.{name}"
                self.lanes.append(self._open_lane(name, log, saved.get(name), lane_group))
        except BaseException:
            for lane in self.lanes:
                lane.close()
            raise
        self._rt = self.lanes[0]
        self._view = StateView([lane.state for lane in self.lanes])
        self._batch_share = config.stream.batch_min_share
        self._batch_busy = False
        self._since_snapshot = 0
        # per lane: the offsets of its last encoding and its bytes (``_encoded_lane``)
        self._encoded_lanes: dict[str, tuple[dict[str, int], msgspec.Raw]] = {}
        self._snapshot_ms = 0  # how long the last snapshot took
        self._last_snapshot_ms = self._clock()
        self._closed = False

    # -- starting --------------------------------------------------------------

    def _file_store(self) -> SnapshotStore:
        directory = self.config.data_path / "stream"
        if self.partition is not None:
            directory /= self.partition.name
        return SnapshotStore(directory, fsync=self.config.log.fsync)

    def _read_snapshot(self) -> dict[str, LaneSnapshot]:
        try:
            data = self._store.read()
            if data is None:
                return {}
            snapshot = decode_snapshot(data)
        except (msgspec.DecodeError, ValueError) as exc:  # SnapshotDamagedError among them
            _logger.error("stream.snapshot_unreadable", error=str(exc), action="rebuild")
            return {}
        if snapshot.settings != self._settings:
            _logger.warning("stream.snapshot_outdated", path=self._store.location, action="rebuild")
            return {}
        return snapshot.lanes

    def _open_lane(self, name: str, log: EventLog, saved: LaneSnapshot | None, group: str) -> Lane:
        restored = self._restore(name, log, saved)
        consumers: list[LogConsumer] = []
        try:
            sources = []
            topics = (("events", LANE_TOPICS[name], log), ("catalog", "catalog", self._catalog_log))
            for key, topic, each in topics:
                consumer = each.consumer(group)
                consumers.append(consumer)
                offset = self._seek(consumer, each, restored.offsets[key], topic)
                sources.append(Source(topic, each, consumer, offset, self._clock))
        except BaseException:
            for consumer in consumers:
                consumer.close()
            raise
        merge = TopicMerge(sources[0], sources[1], self.config.stream.catalog_grace_ms)
        tracker = FreshnessTracker(self.config.stream.freshness_samples)
        restored_parts = (restored.state, restored.bots, restored.categories)
        return Lane(name, merge, *restored_parts, self._intern, tracker, partition=self._pair)

    def _fresh(self) -> _Restored:
        bots = None if self._factory is None else self._factory(None)
        state = StreamState(self._state_config)
        return _Restored(state, bots, {}, {"events": 0, "catalog": 0})

    def _restore(self, name: str, log: EventLog, saved: LaneSnapshot | None) -> _Restored:
        if saved is None:
            return self._fresh()
        logs = {"events": log, "catalog": self._catalog_log}
        offsets = {topic: saved.offsets.get(topic, 0) for topic in logs}
        for topic, offset in offsets.items():
            if offset > logs[topic].end_offset:
                # It reflects records this log does not have: not this log's snapshot.
                _logger.error(
                    "stream.snapshot_ahead_of_log", lane=name, topic=topic, action="rebuild"
                )
                return self._fresh()
        try:
            state = StreamState.from_state(self._state_config, saved.state)
            bots = None if self._factory is None else self._factory(saved.bots)
        except (HotshelfError, ValueError) as exc:
            _logger.error("stream.snapshot_unreadable", lane=name, error=str(exc), action="rebuild")
            return self._fresh()
        categories = {item: self._intern(path) for item, path in saved.categories.items()}
        return _Restored(state, bots, categories, offsets)

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
        """One round: the real-time lane first, then the batch lane; returns records applied.

        With a batch lane, the real-time lane may take all but ``batch_min_share`` of
        ``max_records``; the batch lane gets the rest. Waits up to ``timeout_s`` for
        real-time events only when the batch lane had nothing to do.
        """
        if len(self.lanes) == 1:
            applied = self._step(self._rt, max_records, timeout_s)
        else:
            reserve = max(1, math.ceil(max_records * self._batch_share))
            wait = 0.0 if self._batch_busy else timeout_s
            applied = self._step(self._rt, max_records - reserve, wait)
            batch = self.lanes[1]
            done = self._step(batch, max_records - applied, 0.0)
            self._batch_busy = bool(done) or batch.pending()
            applied += done
        self._since_snapshot += applied
        if self._snapshot_due():
            self.snapshot()
        return applied

    def _step(self, lane: Lane, max_records: int, timeout_s: float) -> int:
        """Poll, then apply in chunks of ``_LOCK_CHUNK`` records, taking the query lock
        for each chunk and letting a waiting query in between: a query never waits out
        a whole batch (1,000 records hold the state for ~15 ms)."""
        lane.poll(max_records, timeout_s)
        received: list[int] = []
        applied = 0
        while applied < max_records:
            with self._lock:
                done = lane.apply(min(_LOCK_CHUNK, max_records - applied), received)
            applied += done
            if done < _LOCK_CHUNK:
                break
            if self._queries_waiting:
                # Let it in: without this pause this thread takes the lock straight back
                # before the woken query runs. Only then: a pause per chunk costs
                # processing up to ~10% on this VM.
                time.sleep(0)
        if received:
            lane.freshness.observe(self._clock(), received)
        return applied

    def _snapshot_due(self) -> bool:
        if not self._since_snapshot or not self.write_snapshots:
            return False
        if self._since_snapshot >= self.config.stream.snapshot_every_records:
            return True
        # A big state takes a while to write: keep snapshots under ~10% of the time.
        interval_ms = max(self.config.stream.snapshot_interval_s * 1000, 10 * self._snapshot_ms)
        return self._clock() - self._last_snapshot_ms >= interval_ms

    def caught_up(self) -> bool:
        """Whether every record the logs hold now has been applied."""
        return not any(self.lag().values())

    def catch_up(self, max_records: int = 1000, timeout_s: float = 30.0) -> int:
        """Apply records until every lane is caught up (or ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while not self.caught_up() and time.monotonic() < deadline:
            applied = self.run_once(max_records)
            total += applied
            if not applied:
                time.sleep(0.005)
        return total

    def catch_up_and_freeze(self, stop: threading.Event | None = None) -> int:
        """Apply what the logs hold now (all of it on a fresh store, else what came after
        the snapshot; not what arrives meanwhile), then freeze the state that built out
        of the cyclic GC, for a process whose life this state shares (the server,
        ``hotshelf stream``); returns the records applied. Stops early when ``stop`` is
        set or when nothing can be applied (events waiting out the catalog grace: ``run``
        takes over).

        Left in the oldest generation, that state was walked by every full collection (a
        200k-event store: ~30k objects, ~320k references, 15-40 ms of stopped process
        every few seconds under load). One full collection runs first, so no garbage is
        frozen; frozen objects are still freed by reference counting when the state drops
        them, and a caught-up state holds no reference cycles (``test_stream_runner``).
        """
        owed = sum(self.lag().values())  # what is there now: live events keep coming
        applied = 0
        while (stop is None or not stop.is_set()) and applied < owed and not self.caught_up():
            done = self.run_once()
            if not done:
                break
            applied += done
        gc.collect()
        gc.freeze()
        return applied

    def run(self, stop: threading.Event, max_records: int = 1000) -> None:
        """Process until ``stop`` is set, then write a last snapshot (the service thread)."""
        self._writer = threading.get_ident()
        while not stop.is_set():
            if not self.run_once(max_records, timeout_s=0.1) and any(
                lane.merge.waiting for lane in self.lanes
            ):
                stop.wait(0.01)  # events wait out the catalog grace; do not spin
        if self.write_snapshots:
            self.snapshot()
        self._writer = None

    # -- snapshots -------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        """The snapshot of the state as it is now (what ``snapshot`` would write)."""
        with self._lock:
            return self._encoded()

    def _encoded(self) -> bytes:
        return encode_snapshot(self._settings, self._encoded_lanes_now())

    def _encoded_lanes_now(self) -> dict[str, msgspec.Raw]:
        with _gc_paused():
            return {lane.name: self._encoded_lane(lane) for lane in self.lanes}

    def _encoded_lane(self, lane: Lane) -> msgspec.Raw:
        """The lane's snapshot bytes: those of the last snapshot while the lane has
        applied nothing since (its state is a function of the records it applied, so
        the same offsets mean the same bytes), else encoded anew, piece by piece. A bulk
        import's lane is then encoded once, not at every snapshot of the live lane."""
        offsets = lane.offsets()
        kept = self._encoded_lanes.get(lane.name)
        if kept is None or kept[0] != offsets:
            kept = (offsets, encode_lane(lane.snapshot_parts()))
            self._encoded_lanes[lane.name] = kept
        return kept[1]

    def snapshot(self) -> int:
        """Write a snapshot, then commit the consumers to its offsets; returns its size.

        The thread in ``run`` is the state's only writer and queries only read, so when
        that thread writes a snapshot it does not hold the lock: queries go on meanwhile
        (a big state takes a few hundred ms to encode). Any other thread takes the lock.
        """
        if not self.write_snapshots:
            raise ConflictError(
                "this processor follows another process's logs: it writes no snapshots"
            )
        began = time.perf_counter_ns()
        writer = threading.get_ident() == self._writer
        with contextlib.nullcontext() if writer else self._lock:
            offsets = [lane.offsets() for lane in self.lanes]
            lanes = self._encoded_lanes_now()
        size = self._store.save(self._settings, lanes)
        for lane, lane_offsets in zip(self.lanes, offsets, strict=True):
            lane.merge.events.consumer.commit(lane_offsets["events"])
            lane.merge.catalog.consumer.commit(lane_offsets["catalog"])
        self._since_snapshot = 0
        self._snapshot_ms = (time.perf_counter_ns() - began) // 1_000_000
        self._last_snapshot_ms = self._clock()
        return size

    # -- reading ---------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[StateView]:
        """A view over the lanes' states, with processing held off while the block reads."""
        with self._waiting_lock:
            self._queries_waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._waiting_lock:
                self._queries_waiting -= 1
        try:
            yield self._view
        finally:
            self._lock.release()

    @property
    def state(self) -> StreamState:
        """The real-time lane's state: read it only with ``reading()`` while running."""
        return self._rt.state

    def offsets(self) -> dict[str, int]:
        """The next offset to apply per topic: the state reflects every record below.

        Keys: "events" and "catalog" for the real-time lane, "events.batch" and
        "catalog@batch" for the batch lane.
        """
        out: dict[str, int] = {}
        for lane in self.lanes:
            for topic, offset in lane.offsets().items():
                out[self._key(lane, topic)] = offset
        return out

    def _key(self, lane: Lane, topic: str) -> str:
        if lane is self._rt:
            return topic
        return lane.topic if topic == "events" else f"{topic}@{lane.name}"

    def lag(self) -> dict[str, int]:
        """Records each lane's topics hold that its state does not reflect yet."""
        out: dict[str, int] = {}
        for lane in self.lanes:
            merge = lane.merge
            for source in (merge.events, merge.catalog):
                behind = max(0, source.end_offset - source.next_offset)
                out[self._key(lane, "catalog" if source is merge.catalog else "events")] = behind
        return out

    def lane_lag(self) -> dict[str, int]:
        """Events per lane ("rt", "batch") not applied yet."""
        return {
            lane.name: max(0, lane.merge.events.end_offset - lane.merge.events.next_offset)
            for lane in self.lanes
        }

    def freshness_summary(self, lane: str = "rt") -> FreshnessSummary:
        """Arrival-to-visible times of one lane's events."""
        for each in self.lanes:
            if each.name == lane:
                return each.freshness.summary()
        raise KeyError(lane)

    def bot_verdicts(self, limit: int = 100) -> list[BotRecord]:
        """Visitors the real-time lane's bot filter flags now, most recently seen first."""
        with self._lock:
            bots = self._rt.bots
            return [] if bots is None else bots.verdicts(limit)

    def bot_stats(self) -> dict[str, int]:
        """Events the bot filters checked and flagged, and flagged events per reason."""
        total: dict[str, int] = {}
        with self._lock:
            for lane in self.lanes:
                if lane.bots is not None:
                    for key, n in lane.bots.stats().items():
                        total[key] = total.get(key, 0) + n
        return total

    def stats(self) -> dict[str, int]:
        """Counters for metrics: lag per topic, records skipped or redelivered, the last
        snapshot's duration, and the sizes of the state's bounded tables."""
        out = {f"lag_{topic}": n for topic, n in self.lag().items()}
        out.update(
            skipped=sum(lane.skipped for lane in self.lanes),
            redelivered=sum(
                lane.merge.events.redelivered + lane.merge.catalog.redelivered
                for lane in self.lanes
            ),
            snapshot_ms=self._snapshot_ms,
        )
        with self._lock:
            out.update(self._view.stats())
        return out

    @property
    def skipped(self) -> int:
        """Records that did not decode, over every lane."""
        return sum(lane.skipped for lane in self.lanes)

    def close(self, *, snapshot: bool = True) -> None:
        """Write a last snapshot (unless told not to) and release the consumers."""
        if self._closed:
            return
        try:
            if snapshot and self._since_snapshot and self.write_snapshots:
                self.snapshot()
        finally:
            self._closed = True
            for lane in self.lanes:
                lane.close()
