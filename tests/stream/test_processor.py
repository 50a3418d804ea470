"""``StreamProcessor`` on real file logs: merge order, snapshots, restarts, exactly once."""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotshelf.config import Config
from hotshelf.errors import ConflictError
from hotshelf.events import (
    CatalogChange,
    CatalogOp,
    EventType,
    Item,
    StoredEvent,
    encode_catalog_change,
    encode_stored_event,
)
from hotshelf.log import (
    AppendResult,
    EventLog,
    FileLog,
    LogConsumer,
    LogFollower,
    LogRecord,
    LogStats,
    VerifyReport,
)
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.stream._lane import MAX_SHARED_NAMES, _shared
from hotshelf.stream._processor import (
    BotFilterFactory,
    StreamProcessor,
    default_bot_filter_factory,
)
from hotshelf.stream._snapshot import SnapshotStore, decode_snapshot
from tests.stream.simulated import config, stored, upserts

T0 = 1_700_000_000_000


class Clock:
    """A settable epoch-ms clock for log stamps and the processor."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def item(item_id: str, *path: str) -> Item:
    return Item(item_id=item_id, title=item_id, category=list(path))


def change(item_id: str, *path: str) -> bytes:
    if not path:
        return encode_catalog_change(
            CatalogChange(op=CatalogOp.DELETE, item_id=item_id, received_ms=T0)
        )
    return upserts([item(item_id, *path)], T0)[0]


def view(item_id: str, t_ms: int, visitor: str = "v1", *, lane: str = "rt") -> bytes:
    return encode_stored_event(
        StoredEvent(
            event_id=f"{visitor}-{t_ms}",
            type=EventType.VIEW,
            ts_ms=t_ms,
            received_ms=t_ms,
            cookie_id=visitor,
            session_id=f"{visitor}-s",
            item_id=item_id,
            location="Paris, FR",
            device="mobile",
            lane=lane,
        )
    )


class Logs:
    """The two topics as FileLogs whose append stamps come from one settable clock."""

    def __init__(self, root: Path, cfg: Config) -> None:
        self.clock = Clock(T0)
        self.events = FileLog(root / "events", cfg.log, clock=self.clock)
        self.catalog = FileLog(root / "catalog", cfg.log, clock=self.clock)

    def append(self, topic: str, at_ms: int, values: Sequence[bytes]) -> None:
        self.clock.now = at_ms
        (self.events if topic == "events" else self.catalog).append(values)
        # Time moves on: what is stamped at_ms is settled once no append is in flight.
        self.clock.now = at_ms + 1

    def close(self) -> None:
        self.events.close()
        self.catalog.close()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    logs = Logs(tmp_path / "log", config(tmp_path))
    yield logs
    logs.close()


def segment_views(processor: StreamProcessor, category: str) -> int:
    with processor.reading() as state:
        return state.counts(category=category).segment["view"]


# -- merge order ---------------------------------------------------------------------


def test_catalog_changes_apply_at_their_place_in_time(tmp_path: Path, logs: Logs) -> None:
    logs.append("catalog", T0, [change("a", "Home")])
    logs.append("events", T0 + 100, [view("a", T0 + 100, "v1")])
    logs.append("catalog", T0 + 200, [change("a", "Toys")])
    logs.append("events", T0 + 200, [view("a", T0 + 200, "v2")])  # a tie: the catalog first
    logs.append("catalog", T0 + 300, [change("a")])  # deleted: unknown category after
    logs.append("events", T0 + 400, [view("a", T0 + 400, "v3")])
    processor = StreamProcessor(config(tmp_path), logs.events, logs.catalog)
    processor.catch_up(max_records=1)
    assert [segment_views(processor, c) for c in ("Home", "Toys", "(none)")] == [1, 1, 1]
    processor.close()


class NoWatermark(FileLog):
    """A file log that cannot say what is in flight, like a log other processes write."""

    def low_watermark_ms(self) -> int | None:
        return None


def test_without_a_low_watermark_events_wait_out_the_catalog_grace(tmp_path: Path) -> None:
    cfg = config(tmp_path, catalog_grace_ms=200)
    clock, now = Clock(T0 + 900), Clock(T0 + 1000)
    events = FileLog(tmp_path / "events", cfg.log, clock=clock)
    catalog = NoWatermark(tmp_path / "catalog", cfg.log, clock=clock)
    events.append([view("a", T0 + 900)])
    processor = StreamProcessor(cfg, events, catalog, clock=now)
    assert processor.run_once() == 0  # stamped 100 ms ago: a catalog append may be in flight
    clock.now = T0 + 850
    catalog.append([change("a", "Toys")])  # ... and here it is
    now.now = T0 + 1200
    assert processor.run_once() == 2
    assert segment_views(processor, "Toys") == 1
    processor.close()
    events.close()
    catalog.close()


def test_events_wait_for_a_catalog_append_in_flight_and_no_longer(
    tmp_path: Path, logs: Logs
) -> None:
    writer = logs.catalog._writer
    publish, landed = writer._publish, threading.Event()

    def held(*args: object) -> None:
        landed.wait(10)
        publish(*args)  # type: ignore[arg-type]

    writer._publish = held  # type: ignore[method-assign]
    logs.clock.now = T0 + 100
    appending = threading.Thread(target=logs.catalog.append, args=([change("a", "Toys")],))
    appending.start()
    deadline = time.monotonic() + 10
    while logs.catalog.low_watermark_ms() != T0 + 100 and time.monotonic() < deadline:
        time.sleep(0.001)  # until it is stamped (and not readable yet)
    logs.append("events", T0 + 150, [view("a", T0 + 150)])
    processor = StreamProcessor(config(tmp_path, catalog_grace_ms=0), logs.events, logs.catalog)
    assert processor.run_once() == 0  # the catalog change in flight goes first
    landed.set()
    appending.join()
    assert processor.run_once() == 2  # no grace to wait out: at once
    assert segment_views(processor, "Toys") == 1
    processor.close()


# -- snapshots and restarts ---------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated() -> tuple[list[bytes], list[bytes]]:
    sim = StoreSimulator(SimConfig(seed=3, n_items=300, events_per_s=100.0))
    return upserts(sim.catalog()), [encode_stored_event(e) for e in stored(sim.events(4000))]


def fill(logs: Logs, simulated: tuple[list[bytes], list[bytes]]) -> None:
    catalog, events = simulated
    logs.append("catalog", T0, catalog)
    for i in range(0, len(events), 250):
        logs.append("events", T0 + i, events[i : i + 250])


def rebuild(
    tmp_path: Path, logs: Logs, name: str = "clean", bots: BotFilterFactory | None = None
) -> bytes:
    """A fresh processor's snapshot after reading both logs from the start."""
    processor = StreamProcessor(
        config(tmp_path / name), logs.events, logs.catalog, bots, group=name
    )
    processor.catch_up()
    data = processor.snapshot_bytes()
    processor.close()
    return data


def test_a_restart_resumes_at_the_snapshot(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    fill(logs, simulated)
    cfg = config(tmp_path / "run")
    first = StreamProcessor(cfg, logs.events, logs.catalog)
    for _ in range(3):
        first.run_once(max_records=700)
    first.snapshot()
    saved = first.offsets()
    first.run_once(max_records=500)  # applied, never snapshotted: lost in the "crash"
    first.close(snapshot=False)
    consumer = logs.events.consumer("stream")
    assert consumer.committed() == saved["events"]  # committed once the snapshot was durable
    consumer.close()

    second = StreamProcessor(cfg, logs.events, logs.catalog)
    assert second.offsets() == saved
    second.catch_up()
    assert second.snapshot_bytes() == rebuild(tmp_path, logs)
    second.close()
    snapshot = decode_snapshot(SnapshotStore(cfg.data_path / "stream").read() or b"")
    assert snapshot.lanes["rt"].offsets == {"events": 4000, "catalog": 300}


def _filled_with_bots(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> tuple[Config, StreamProcessor]:
    """The simulated logs, and a processor with the default bot filter over them."""
    fill(logs, simulated)
    cfg = config(tmp_path / "run")
    return cfg, StreamProcessor(cfg, logs.events, logs.catalog, default_bot_filter_factory(cfg))


def test_a_replay_writes_byte_identical_snapshots_with_the_bot_filter(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    cfg, live = _filled_with_bots(tmp_path, logs, simulated)
    live.catch_up(max_records=333)
    live.close()
    data = SnapshotStore(cfg.data_path / "stream").read() or b""
    assert decode_snapshot(data).lanes["rt"].bots is not None
    assert data == rebuild(tmp_path, logs, bots=default_bot_filter_factory(cfg))
    # restored with its bot filter, it continues where it was
    again = StreamProcessor(cfg, logs.events, logs.catalog, default_bot_filter_factory(cfg))
    assert again.snapshot_bytes() == data
    again.close()


def test_snapshots_encoded_in_pieces_are_the_bytes_of_one_encoding(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    cfg, processor = _filled_with_bots(tmp_path, logs, simulated)
    processor.run_once(max_records=700)
    early = processor.snapshot_bytes()
    # decoded to builtins and encoded in one call: the same bytes
    assert msgspec.msgpack.encode(decode_snapshot(early)) == early
    assert processor.snapshot_bytes() == early  # nothing applied since: the kept bytes
    processor.catch_up()  # a lane that applied more is encoded anew, never served stale
    late = processor.snapshot_bytes()
    processor.close()
    assert late != early
    assert late == rebuild(tmp_path, logs, bots=default_bot_filter_factory(cfg))
    assert msgspec.msgpack.encode(decode_snapshot(late)) == late


def test_unusable_snapshots_are_rebuilt_from_the_log(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    fill(logs, simulated)
    clean = rebuild(tmp_path, logs)
    store = SnapshotStore(tmp_path / "run" / "stream")
    other_settings = rebuild(tmp_path, logs, "other", bots=lambda state: _NoBots())
    for bad in (b"garbage", other_settings):  # unreadable; then taken with a bot filter
        store.write(bad)
        assert rebuild(tmp_path, logs, "run") == clean
    ahead = decode_snapshot(clean)
    rt = msgspec.structs.replace(ahead.lanes["rt"], offsets={"events": 10**9})
    store.write(msgspec.msgpack.encode(msgspec.structs.replace(ahead, lanes={"rt": rt})))
    assert rebuild(tmp_path, logs, "run") == clean


def test_an_unreadable_bot_filter_state_rebuilds_everything(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    fill(logs, simulated)
    cfg = config(tmp_path / "run")
    first = StreamProcessor(cfg, logs.events, logs.catalog, lambda state: _NoBots())
    first.catch_up()
    first.close()

    def picky(state: object | None) -> _NoBots:
        if state is not None:
            raise ValueError("not my state")
        return _NoBots()

    second = StreamProcessor(cfg, logs.events, logs.catalog, picky)
    assert second.offsets() == {"events": 0, "catalog": 0}
    second.catch_up()
    stats = second.stats()
    assert (stats["lag_events"], stats["lag_catalog"], stats["skipped"]) == (0, 0, 0)
    assert stats["sessions"] > 0
    second.close()


class _NoBots:
    """A bot filter that finds none (for settings that differ from no filter at all)."""

    class _Verdict:
        is_bot = False

    def check(self, event: StoredEvent) -> _NoBots._Verdict:
        return self._Verdict()

    def to_state(self) -> object:
        return {"flagged": 0}


def test_undecodable_records_are_skipped(tmp_path: Path, logs: Logs) -> None:
    logs.append("events", T0, [view("a", T0), b"\xc1 not msgpack", view("a", T0 + 1, "v2")])
    processor = StreamProcessor(config(tmp_path), logs.events, logs.catalog)
    processor.catch_up()
    assert processor.skipped == 1
    assert segment_views(processor, "*") == 2
    processor.close()


def test_freshness_counts_live_events_only(tmp_path: Path, logs: Logs) -> None:
    logs.append("events", T0, [view("a", T0), view("b", T0, lane="batch")])
    cfg = config(tmp_path, catalog_grace_ms=10)
    processor = StreamProcessor(cfg, logs.events, logs.catalog, clock=Clock(T0 + 40))
    processor.catch_up()
    summary = processor.freshness_summary()
    assert (summary.count, summary.sum_ms, summary.p99_ms) == (1, 40, 40.0)
    assert summary.buckets[2:4] == [(25.0, 0), (50.0, 1)]  # 40 ms: in the 25..50 ms bucket
    processor.close()


def test_the_service_loop_stops_with_a_snapshot(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    fill(logs, simulated)
    cfg = config(tmp_path / "run")
    processor = StreamProcessor(cfg, logs.events, logs.catalog)
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    while not processor.caught_up():
        stop.wait(0.01)
    with processor.reading() as state:
        assert state.counts().events["view"] > 0
    stop.set()
    thread.join(10)
    processor.close()
    assert SnapshotStore(cfg.data_path / "stream").read() == rebuild(tmp_path, logs)


def test_queries_go_on_while_the_service_loop_writes_a_snapshot(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    fill(logs, simulated)
    processor = StreamProcessor(config(tmp_path / "run", snapshot_every_records=1),
                                logs.events, logs.catalog)  # fmt: skip
    writing, release = threading.Event(), threading.Event()
    encoded = processor._encoded_lanes_now

    def slow_encoding() -> dict[str, msgspec.Raw]:  # a big state's, held open by the test
        writing.set()
        release.wait(10)
        return encoded()

    processor._encoded_lanes_now = slow_encoding  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,))
    thread.start()
    try:
        assert writing.wait(10)
        answered = threading.Event()

        def query() -> None:
            with processor.reading() as state:
                state.counts()
            answered.set()

        threading.Thread(target=query, daemon=True).start()
        assert answered.wait(5)  # the query did not wait for the snapshot
    finally:
        release.set()
        processor._encoded_lanes_now = encoded  # type: ignore[method-assign]
        stop.set()
        thread.join(10)
        processor.close()


def test_a_waiting_query_gets_in_between_chunks_of_a_batch(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    fill(logs, simulated)
    processor = StreamProcessor(config(tmp_path / "run"), logs.events, logs.catalog)
    lane = processor.lanes[0]
    chunks: list[int] = []
    first_chunk = threading.Event()

    class CountedLane:
        """The lane, its chunks counted (a compiled ``Lane`` cannot be patched)."""

        def __getattr__(self, name: str) -> object:
            return getattr(lane, name)

        def apply(self, max_records: int, received: list[int]) -> int:
            done = lane.apply(max_records, received)
            chunks.append(done)
            if len(chunks) == 1:  # a query arrives while the first chunk holds the lock
                first_chunk.set()
                deadline = time.monotonic() + 10
                while not processor._queries_waiting and time.monotonic() < deadline:
                    time.sleep(0.001)
            return done

    processor._rt = CountedLane()  # type: ignore[assignment]
    got_in_after: list[int] = []

    def query() -> None:
        first_chunk.wait(10)
        with processor.reading():
            got_in_after.append(len(chunks))

    thread = threading.Thread(target=query)
    thread.start()
    try:
        applied = processor.run_once(max_records=1000)
    finally:
        thread.join(10)
        processor.close(snapshot=False)
    assert applied == 1000
    assert len(chunks) == -(-1000 // 64)  # the batch went in chunks of 64
    assert got_in_after == [1]  # right after the first, not after the whole batch


# -- exactly once under redelivery, duplicates and restarts ------------------------------


class FlakyConsumer(LogConsumer):
    """A real consumer whose polls also hand back records already delivered, and repeats."""

    def __init__(self, inner: LogConsumer, log: EventLog, rng: random.Random) -> None:
        self._inner, self._log, self._rng = inner, log, rng
        self._delivered = 0

    def poll(self, max_records: int = 1000, timeout_s: float = 0.0) -> list[LogRecord]:
        delivered = self._delivered
        records = self._inner.poll(max_records, timeout_s)
        if records:
            self._delivered = records[-1].offset + 1
        roll = self._rng.random()
        if roll < 0.3 and delivered:  # redeliver an earlier stretch first
            start = self._rng.randrange(delivered)
            return self._log.read(start, self._rng.randint(1, delivered - start)) + records
        if roll < 0.5 and records:  # the same records twice
            return records + records[: self._rng.randint(1, len(records))]
        if roll < 0.6 and len(records) > 1:  # a record held back: the rest come past a gap
            self._delivered = records[0].offset
            return records[1:]
        return records

    def seek(self, offset: int) -> None:
        self._inner.seek(offset)
        self._delivered = min(self._delivered, offset)

    def commit(self, next_offset: int) -> None:
        self._inner.commit(next_offset)

    def committed(self) -> int:
        return self._inner.committed()

    def close(self) -> None:
        self._inner.close()


class FlakyLog(EventLog):
    """A real log whose consumers are flaky (``FlakyConsumer``); everything else is the log's."""

    def __init__(self, inner: EventLog, rng: random.Random) -> None:
        self._inner, self._rng = inner, rng

    def consumer(self, group: str, name: str = "0") -> LogConsumer:
        return FlakyConsumer(self._inner.consumer(group, name), self._inner, self._rng)

    def append(self, values: Sequence[bytes]) -> AppendResult:
        return self._inner.append(values)

    async def append_async(self, values: Sequence[bytes]) -> AppendResult:
        return await self._inner.append_async(values)

    def read(self, offset: int, max_records: int = 1000) -> list[LogRecord]:
        return self._inner.read(offset, max_records)

    @property
    def start_offset(self) -> int:
        return self._inner.start_offset

    @property
    def end_offset(self) -> int:
        return self._inner.end_offset

    def apply_retention(self, now_ms: int | None = None) -> int:
        return self._inner.apply_retention(now_ms)

    def verify(self) -> VerifyReport:
        return self._inner.verify()

    def stats(self) -> LogStats:
        return self._inner.stats()

    def close(self) -> None:
        self._inner.close()


ITEMS = ["a", "b", "c", "d"]
PATHS = [("Home",), ("Toys",), ("Garden", "Tools"), ()]  # () deletes

appends = st.lists(
    st.one_of(
        st.tuples(
            st.just("events"),
            st.lists(
                st.tuples(st.sampled_from(ITEMS), st.sampled_from(["v1", "v2", "v3"])),
                min_size=1,
                max_size=15,
            ),
        ),
        st.tuples(
            st.just("catalog"),
            st.lists(
                st.tuples(st.sampled_from(ITEMS), st.sampled_from(PATHS)), min_size=1, max_size=3
            ),
        ),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    batches=appends,
    stamps=st.lists(st.integers(0, 5), min_size=12, max_size=12),
    seed=st.integers(0, 2**32),
)
def test_redeliveries_duplicates_and_restarts_end_in_the_clean_bytes(
    batches: list[tuple[str, list[tuple[str, str]]]], stamps: list[int], seed: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        logs = Logs(root / "log", config(root))
        try:
            t = T0
            for n, (topic, rows) in enumerate(batches):
                t += stamps[n] * 10  # steps of 0 make ties between the topics
                if topic == "events":
                    values = [view(i, t - k, v) for k, (i, v) in enumerate(rows)]
                else:
                    values = [change(i, *path) for i, path in rows]
                logs.append(topic, t, values)
            clean = rebuild(root, logs)
            assert clean == rebuild(root, logs, "again")  # a replay from 0: the same bytes
            rng = random.Random(seed)
            flaky_events, flaky_catalog = FlakyLog(logs.events, rng), FlakyLog(logs.catalog, rng)
            cfg = config(root / "flaky")
            processor = StreamProcessor(cfg, flaky_events, flaky_catalog)
            for _ in range(5000):
                if processor.caught_up():
                    break
                processor.run_once(max_records=rng.randint(1, 8))
                if rng.random() < 0.3:  # a restart, after a snapshot or after a crash
                    processor.close(snapshot=rng.random() < 0.5)
                    processor = StreamProcessor(cfg, flaky_events, flaky_catalog)
            assert processor.caught_up()
            assert processor.snapshot_bytes() == clean
            processor.close()
        finally:
            logs.close()


def test_equal_ids_share_one_string_in_the_state(tmp_path: Path, logs: Logs) -> None:
    # Each event decodes its own strings; the lane hands the state the first one it saw
    # of an item id (and location, device), so tables find such keys by identity.
    logs.append("events", T0, [view("a", T0), view("b", T0 + 1), view("b", T0 + 2, "v2")])
    processor = StreamProcessor(config(tmp_path), logs.events, logs.catalog)
    processor.catch_up()
    viewed = processor.lanes[0].state._history.sessions.kinds[0]
    first = next(k for k in viewed["v1-s"] if k == "b")
    later = next(k for k in viewed["v2-s"] if k == "b")
    assert later is first
    processor.close()


def test_sharing_strings_is_bounded() -> None:
    names = {str(i): str(i) for i in range(MAX_SHARED_NAMES)}
    fresh = "".join(["new", "-", "name"])
    assert _shared(names, fresh) is fresh
    assert len(names) == MAX_SHARED_NAMES  # full: not kept
    kept = "".join(["1", "7"])
    assert _shared(names, kept) is names["17"]
    assert _shared(names, kept) is not kept


# -- a follower in another process -------------------------------------------------------


def _files(directory: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def test_a_following_processor_reaches_the_writers_state_and_writes_nothing(
    tmp_path: Path, logs: Logs, simulated: tuple[list[bytes], list[bytes]]
) -> None:
    catalog, events = simulated
    logs.append("catalog", logs.clock.now, catalog)
    for i in range(0, 2000, 250):
        logs.append("events", logs.clock.now + i, events[i : i + 250])
    cfg = config(tmp_path / "run")
    writer = StreamProcessor(cfg, logs.events, logs.catalog)
    writer.catch_up()
    writer.snapshot()  # what the follower starts from
    for i in range(2000, 3000, 250):  # after the snapshot: the follower replays these
        logs.append("events", logs.clock.now + i, events[i : i + 250])
    writer.catch_up()
    before = _files(tmp_path)

    follower_logs = {
        name: LogFollower(tmp_path / "log" / name, cfg.log) for name in ("events", "catalog")
    }
    follower = StreamProcessor(
        cfg, follower_logs["events"], follower_logs["catalog"], write_snapshots=False
    )
    assert follower.offsets() == {"events": 2000, "catalog": 300}  # restored, not rebuilt
    follower.catch_up()
    assert follower.snapshot_bytes() == writer.snapshot_bytes()
    for i in range(3000, 4000, 250):  # live: appended while both run
        logs.append("events", logs.clock.now + i, events[i : i + 250])
    writer.catch_up()
    follower.catch_up()
    assert follower.snapshot_bytes() == writer.snapshot_bytes() == rebuild(tmp_path, logs)
    with pytest.raises(ConflictError, match="writes no snapshots"):
        follower.snapshot()
    follower.close()
    for log in follower_logs.values():
        log.close()
    # (the rebuild's own processor wrote its snapshot and group: "clean")
    after = {
        p: t
        for p, t in _files(tmp_path).items()
        if "/clean/" not in p and not p.endswith("/clean.offset")
    }
    writes = {p for p in after if before.get(p) != after[p]}
    # only the writer's own appends touched files: segments, their indexes, tail markers
    assert all(p.endswith((".log", ".idx", "/tail")) for p in writes), writes
    writer.close()
