"""The contract every ``EventLog`` backend meets, run against each of them.

The fixture opens logs by name, so a test can close a log and open it again to check
what survives. Backend differences the contract allows are noted where they matter.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotshelf.config import LogConfig
from hotshelf.errors import LogClosedError, OffsetOutOfRangeError, ValidationError
from hotshelf.log import EventLog, FileLog, LogRecord


class LogFactory:
    """Opens logs of one backend by name; the same name reopens the same log."""

    def __init__(self, backend: str, tmp_path: Path, redis_url: str | None) -> None:
        self.backend = backend
        self._tmp_path = tmp_path
        self._redis_url = redis_url
        self._open: list[EventLog] = []
        self._names = itertools.count()

    def open(self, name: str = "events", **settings: Any) -> EventLog:
        log: EventLog
        if self.backend == "file":
            log = FileLog(self._tmp_path / name, LogConfig(**settings))
        else:
            from hotshelf.log._redis_log import RedisStreamLog

            log = RedisStreamLog(
                LogConfig(backend="redis", redis_url=self._redis_url, **settings), name
            )
        self._open.append(log)
        return log

    def fresh(self, **settings: Any) -> EventLog:
        """A new, empty log."""
        return self.open(f"fresh{next(self._names)}", **settings)

    def close_all(self) -> None:
        for log in self._open:
            log.close()


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogFactory]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    factory = LogFactory(request.param, tmp_path, url)
    yield factory
    factory.close_all()


def values_of(records: list[LogRecord]) -> list[bytes]:
    return [r.value for r in records]


def read_all(log: EventLog, offset: int | None = None, chunk: int = 1000) -> list[LogRecord]:
    offset = log.start_offset if offset is None else offset
    out: list[LogRecord] = []
    while offset < log.end_offset:
        records = log.read(offset, chunk)
        assert records, f"no records at {offset} below end {log.end_offset}"
        out += records
        offset = records[-1].offset + 1
    return out


# -- appending and reading ----------------------------------------------------------


def test_offsets_are_dense_from_zero(logs: LogFactory) -> None:
    log = logs.open()
    assert (log.start_offset, log.end_offset) == (0, 0)
    first = log.append([b"a", b"b", b"c"])
    second = log.append([b"d"])
    assert (first.first_offset, first.last_offset, first.count) == (0, 2, 3)
    assert (second.first_offset, second.last_offset) == (3, 3)
    assert log.end_offset == 4
    records = log.read(0)
    assert [r.offset for r in records] == [0, 1, 2, 3]
    assert values_of(records) == [b"a", b"b", b"c", b"d"]
    assert all(r.timestamp_ms > 0 for r in records)


def test_read_from_any_offset_with_max_records(logs: LogFactory) -> None:
    log = logs.open()
    values = [f"v{i}".encode() for i in range(25)]
    for i in range(0, 25, 5):
        log.append(values[i : i + 5])
    for offset in range(25):
        for max_records in (1, 3, 7, 100):
            got = log.read(offset, max_records)
            assert values_of(got) == values[offset : offset + max_records]
            assert [r.offset for r in got] == list(range(offset, offset + len(got)))
    assert log.read(25) == []


def test_empty_log_reads_nothing(logs: LogFactory) -> None:
    assert logs.open().read(0) == []


def test_reads_out_of_range_raise(logs: LogFactory) -> None:
    log = logs.open()
    log.append([b"x", b"y"])
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1)
    assert log.read(2) == []


def test_bad_batches_are_rejected(logs: LogFactory) -> None:
    log = logs.open()
    with pytest.raises(ValidationError):
        log.append([])
    with pytest.raises(ValidationError):
        log.append(["text"])  # type: ignore[list-item]
    assert log.end_offset == 0


def test_records_survive_reopen(logs: LogFactory) -> None:
    log = logs.open()
    log.append([b"one", b"two"])
    log.append([b""])  # empty records are records too
    log.close()
    log = logs.open()
    assert (log.start_offset, log.end_offset) == (0, 3)
    assert values_of(log.read(0)) == [b"one", b"two", b""]
    assert log.append([b"three"]).first_offset == 3


def test_closed_log_refuses_work(logs: LogFactory) -> None:
    log = logs.open()
    log.append([b"a"])
    log.close()
    with pytest.raises(LogClosedError):
        log.append([b"b"])
    with pytest.raises(LogClosedError):
        log.read(0)
    log.close()  # closing twice is harmless


# -- concurrency --------------------------------------------------------------------


def check_disjoint_and_complete(log: EventLog, results: dict[bytes, int]) -> None:
    """Every value appended exactly once, at the offset its append was given."""
    records = read_all(log, 0)
    assert [r.offset for r in records] == list(range(len(results)))
    assert {r.value: r.offset for r in records} == results


def test_concurrent_threads_get_disjoint_dense_offsets(logs: LogFactory) -> None:
    log = logs.open()
    results: dict[bytes, int] = {}
    lock = threading.Lock()

    def work(thread: int) -> None:
        for batch in range(15):
            values = [f"t{thread}-b{batch}-{i}".encode() for i in range(1 + batch % 4)]
            got = log.append(values)
            assert got.count == len(values)
            with lock:
                results.update(
                    zip(values, range(got.first_offset, got.last_offset + 1), strict=True)
                )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_disjoint_and_complete(log, results)


def test_concurrent_tasks_get_disjoint_dense_offsets(logs: LogFactory) -> None:
    log = logs.open()
    results: dict[bytes, int] = {}

    async def work(task: int) -> None:
        for batch in range(5):
            values = [f"a{task}-b{batch}-{i}".encode() for i in range(1 + task % 3)]
            got = await log.append_async(values)
            results.update(zip(values, range(got.first_offset, got.last_offset + 1), strict=True))

    async def main() -> None:
        await asyncio.gather(*(work(t) for t in range(32)))

    asyncio.run(main())
    check_disjoint_and_complete(log, results)


# -- consumers ----------------------------------------------------------------------


def test_consumer_resumes_after_reopen(logs: LogFactory) -> None:
    log = logs.open()
    log.append([f"r{i}".encode() for i in range(10)])
    consumer = log.consumer("indexer")
    assert consumer.committed() == 0
    assert [r.offset for r in consumer.poll(4)] == [0, 1, 2, 3]
    consumer.commit(2)
    assert consumer.committed() == 2
    assert [r.offset for r in consumer.poll(3)] == [4, 5, 6]
    log.close()

    log = logs.open()
    consumer = log.consumer("indexer")
    assert consumer.committed() == 2
    got = []
    while batch := consumer.poll(3):
        got += batch
    # 2..6 were handed out but not committed: they come again; 0..1 do not.
    assert [r.offset for r in got] == list(range(2, 10))
    consumer.commit(10)
    log.append([b"late"])
    assert values_of(consumer.poll()) == [b"late"]


def test_poll_waits_for_new_records(logs: LogFactory) -> None:
    log = logs.open()
    consumer = log.consumer("waiter")
    assert consumer.poll(timeout_s=0.05) == []
    timer = threading.Timer(0.1, lambda: log.append([b"soon"]))
    timer.start()
    try:
        started = time.monotonic()
        got = consumer.poll(timeout_s=10)
        assert values_of(got) == [b"soon"]
        assert time.monotonic() - started < 5
    finally:
        timer.join()


def test_seek_replays_without_moving_the_commit(logs: LogFactory) -> None:
    log = logs.open()
    log.append([f"s{i}".encode() for i in range(6)])
    consumer = log.consumer("replayer")
    assert len(consumer.poll()) == 6
    consumer.commit(6)
    consumer.seek(3)
    assert [r.offset for r in consumer.poll()] == [3, 4, 5]
    assert consumer.committed() == 6
    consumer.seek(0)
    assert [r.offset for r in consumer.poll(2)] == [0, 1]


def test_groups_are_independent(logs: LogFactory) -> None:
    log = logs.open()
    log.append([f"g{i}".encode() for i in range(8)])
    first, second = log.consumer("first"), log.consumer("second")
    assert len(first.poll()) == 8
    first.commit(8)
    assert [r.offset for r in second.poll(3)] == [0, 1, 2]
    second.commit(3)
    log.close()
    log = logs.open()
    assert log.consumer("first").committed() == 8
    second = log.consumer("second")
    assert second.committed() == 3
    assert second.poll(1)[0].offset == 3


# -- upkeep -------------------------------------------------------------------------


def test_retention_moves_start_offset(logs: LogFactory) -> None:
    # Small limits both backends act on: 1 KiB segments with 3 KB kept (file), or
    # 50 entries kept (Redis). Either drops the oldest records and keeps the newest.
    log = logs.open(
        segment_max_bytes=1024, retention_bytes=3000, retention_hours=None, redis_maxlen=50
    )
    values = [f"{i:04d}".encode() * 12 for i in range(200)]
    for i in range(0, 200, 5):
        log.append(values[i : i + 5])
    before = log.start_offset
    dropped = log.apply_retention()
    start = log.start_offset
    assert dropped == start - before
    assert 0 < start <= 190
    assert log.end_offset == 200
    with pytest.raises(OffsetOutOfRangeError):
        log.read(start - 1)
    assert values_of(read_all(log)) == values[start:]
    assert log.stats().start_offset == start
    assert log.append([b"after"]).first_offset == 200


def test_verify_is_clean_on_a_healthy_log(logs: LogFactory) -> None:
    log = logs.open()
    for i in range(10):
        log.append([f"h{i}-{j}".encode() for j in range(i + 1)])
    report = log.verify()
    assert report.ok
    assert report.damage == []
    assert (report.start_offset, report.end_offset, report.records) == (0, 55, 55)
    stats = log.stats()
    assert (stats.start_offset, stats.end_offset) == (0, 55)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(
        st.lists(st.binary(max_size=300), min_size=1, max_size=20), min_size=1, max_size=12
    ),
    chunks=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=10),
)
def test_appended_batches_read_back_in_any_chunks(
    logs: LogFactory, batches: list[list[bytes]], chunks: list[int]
) -> None:
    log = logs.fresh(segment_max_bytes=2048)
    for batch in batches:
        log.append(batch)
    expected = [value for batch in batches for value in batch]
    got: list[bytes] = []
    offset = 0
    for size in itertools.cycle(chunks):
        records = log.read(offset, size)
        if not records:
            break
        assert len(records) <= size
        got += values_of(records)
        offset = records[-1].offset + 1
    assert got == expected
    log.close()
