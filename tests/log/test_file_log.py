"""FileLog specifics: segment layout and rolls, the index, retention, group commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hotshelf.config import Config, LogConfig
from hotshelf.errors import (
    ConflictError,
    LogClosedError,
    OffsetOutOfRangeError,
    UnavailableError,
    ValidationError,
)
from hotshelf.log import FileLog, LogObserver, LogRecord, _group_commit, open_log

HOUR_MS = 3_600_000
T0 = 1_795_305_600_000  # 2026-11-22 00:00:00 UTC


class Clock:
    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def segment_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.glob("*/*/*.log"))


def read_all(log: FileLog, offset: int = 0) -> list[LogRecord]:
    out: list[LogRecord] = []
    while offset < log.end_offset:
        records = log.read(offset)
        out += records
        offset = records[-1].offset + 1
    return out


def test_hourly_rolls_partition_by_hour(tmp_path: Path) -> None:
    clock = Clock(T0 + 16 * HOUR_MS + 5_000)
    with FileLog(tmp_path, LogConfig(), clock=clock) as log:
        log.append([b"a", b"b"])
        clock.now_ms += 10 * 60_000  # same hour: same segment
        log.append([b"c"])
        clock.now_ms += HOUR_MS
        log.append([b"d"])
        clock.now_ms += 8 * HOUR_MS  # past midnight
        log.append([b"e", b"f"])
        assert [r.value for r in log.read(0)] == [b"a", b"b", b"c", b"d", b"e", b"f"]
        assert [r.timestamp_ms for r in log.read(3)] == [
            T0 + 17 * HOUR_MS + 605_000,
            T0 + 25 * HOUR_MS + 605_000,
            T0 + 25 * HOUR_MS + 605_000,
        ]
    assert segment_files(tmp_path) == [
        "2026-11-22/16/00000000000000000000.log",
        "2026-11-22/17/00000000000000000003.log",
        "2026-11-23/01/00000000000000000004.log",
    ]


def test_daily_rolls(tmp_path: Path) -> None:
    clock = Clock(T0 + 3 * HOUR_MS)
    with FileLog(tmp_path, LogConfig(segment_roll="day"), clock=clock) as log:
        log.append([b"a"])
        clock.now_ms += 5 * HOUR_MS
        log.append([b"b"])
        clock.now_ms += 20 * HOUR_MS
        log.append([b"c"])
    assert segment_files(tmp_path) == [
        "2026-11-22/03/00000000000000000000.log",
        "2026-11-23/04/00000000000000000002.log",
    ]


def test_size_rolls_keep_segments_under_the_limit(tmp_path: Path) -> None:
    config = LogConfig(segment_max_bytes=500, segment_roll="size")
    values = [f"value-{i:05d}".encode() * 3 for i in range(120)]
    with FileLog(tmp_path, config) as log:
        for i in range(0, 120, 4):
            log.append(values[i : i + 4])
        assert log.stats().segments == len(segment_files(tmp_path)) > 10
    sizes = [p.stat().st_size for p in tmp_path.glob("*/*/*.log")]
    assert max(sizes) <= 500
    with FileLog(tmp_path, config) as log:
        assert [r.value for r in read_all(log)] == values
        assert log.verify().ok
        assert log.append([b"next"]).first_offset == 120


def test_a_batch_bigger_than_a_segment_gets_its_own(tmp_path: Path) -> None:
    with FileLog(tmp_path, LogConfig(segment_max_bytes=100)) as log:
        log.append([b"small"])
        log.append([b"x" * 300])
        log.append([b"small"])
        assert log.stats().segments == 3
        assert [len(r.value) for r in log.read(0)] == [5, 300, 5]


def test_index_is_rebuilt_when_deleted_or_garbage(tmp_path: Path) -> None:
    config = LogConfig(segment_max_bytes=4000, index_interval_bytes=200)
    values = [f"{i:06d}".encode() * 5 for i in range(300)]
    with FileLog(tmp_path, config) as log:
        for i in range(0, 300, 3):
            log.append(values[i : i + 3])
    indexes = sorted(tmp_path.glob("*/*/*.idx"))
    assert len(indexes) > 2
    original = {p: p.read_bytes() for p in indexes}
    assert all(len(data) > 0 and len(data) % 16 == 0 for data in original.values())
    indexes[0].unlink()
    indexes[1].write_bytes(b"\xff" * 64)
    with FileLog(tmp_path, config) as log:
        assert log.recovery.ok
        assert [r.value for r in log.read(150, 30)] == values[150:180]
        assert [r.value for r in read_all(log)] == values
        assert log.verify().ok
    assert {p: p.read_bytes() for p in indexes} == original


def test_reads_use_the_index(tmp_path: Path) -> None:
    config = LogConfig(index_interval_bytes=1000)
    with FileLog(tmp_path, config) as log:
        for i in range(200):
            log.append([f"{i:05d}".encode() * 10])
        (index,) = tmp_path.glob("*/*/*.idx")
        assert len(index.read_bytes()) // 16 > 5
        for offset in (0, 57, 133, 199):
            assert log.read(offset, 1)[0].value == f"{offset:05d}".encode() * 10


def fill_hours(log: FileLog, clock: Clock, hours: int, per_hour: int = 10) -> None:
    for _ in range(hours):
        log.append([b"r" * 50] * per_hour)
        clock.now_ms += HOUR_MS


def test_retention_by_age(tmp_path: Path) -> None:
    clock = Clock()
    with FileLog(tmp_path, LogConfig(retention_hours=2.5), clock=clock) as log:
        fill_hours(log, clock, 6)  # appended at T0 .. T0 + 5h; now T0 + 6h
        assert log.apply_retention() == 30  # hours 0..2 are older than 2.5 h
        assert log.start_offset == 30
        assert len(segment_files(tmp_path)) == 3
        assert not (tmp_path / "2026-11-22" / "00").exists()
        with pytest.raises(OffsetOutOfRangeError):
            log.read(29)
        assert log.read(30, 1)[0].offset == 30
        assert log.apply_retention() == 0
        # Far in the future everything is old, but the active segment always stays.
        assert log.apply_retention(clock.now_ms + 100 * HOUR_MS) == 20
        assert log.start_offset == 50
        assert log.stats().segments == 1
    with FileLog(tmp_path, LogConfig(), clock=clock) as log:
        assert (log.start_offset, log.end_offset) == (50, 60)


def test_retention_by_bytes(tmp_path: Path) -> None:
    clock = Clock()
    config = LogConfig(retention_hours=None, retention_bytes=2000)
    with FileLog(tmp_path, config, clock=clock) as log:
        fill_hours(log, clock, 6)  # ~570 B per hour segment
        log.apply_retention()
        stats = log.stats()
        assert stats.size_bytes <= 2000 < stats.size_bytes + 570
        assert stats.size_bytes == sum(p.stat().st_size for p in tmp_path.glob("*/*/*.log"))
        assert stats.start_offset == 30
        assert len(read_all(log, 30)) == 30


class CountingObserver(LogObserver):
    def __init__(self, pause_s: float = 0.0) -> None:
        self.syncs: list[tuple[int, int, int]] = []
        self.appends: list[int] = []
        self.pause_s = pause_s
        self.lock = threading.Lock()

    def on_sync(self, batches: int, records: int, bytes_: int, seconds: float) -> None:
        assert seconds >= 0
        self.syncs.append((batches, records, bytes_))
        time.sleep(self.pause_s)  # holds the writer, so appends pile up behind it

    def on_append(self, records: int, seconds: float) -> None:
        with self.lock:
            self.appends.append(records)


def run_threads(n: int, work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_group_commit_shares_syncs(tmp_path: Path) -> None:
    observer = CountingObserver(pause_s=0.002)
    with FileLog(tmp_path, LogConfig(), observer=observer) as log:
        run_threads(16, lambda i: [log.append([b"v" * 100] * 5) for _ in range(20)])
        assert log.end_offset == 16 * 20 * 5
    assert len(observer.appends) == 320
    assert sum(b for b, _, _ in observer.syncs) == 320
    assert sum(r for _, r, _ in observer.syncs) == 1600
    assert len(observer.syncs) < 320 / 2


class HeldSync:
    """Syncs that wait for ``release`` once ``hold`` is called: a group is then written
    but not durable (``written`` is set) until the test lets it go."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.written, self.release = threading.Event(), threading.Event()
        self._monkeypatch = monkeypatch
        self._real = _group_commit._datasync

    def hold(self) -> None:
        self._monkeypatch.setattr(_group_commit, "_datasync", self._slow_sync)

    def _slow_sync(self, fd: int) -> None:
        self.written.set()
        assert self.release.wait(10)
        self._real(fd)


def test_reads_never_see_unsynced_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldSync(monkeypatch)
    with FileLog(tmp_path, LogConfig()) as log:
        consumer = log.consumer("watcher")
        held.hold()
        appender = threading.Thread(target=log.append, args=([b"pending"],))
        appender.start()
        assert held.written.wait(10)
        (segment,) = tmp_path.glob("*/*/*.log")
        assert segment.stat().st_size > 0  # on disk, not yet durable
        assert log.end_offset == 0
        assert log.read(0) == []
        assert consumer.poll(timeout_s=0.05) == []
        held.release.set()
        appender.join()
        assert [r.value for r in consumer.poll(timeout_s=5)] == [b"pending"]


def test_the_low_watermark_is_the_stamp_in_flight_and_never_goes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldSync(monkeypatch)
    clock = Clock(T0 + 500)
    with FileLog(tmp_path, LogConfig(), clock=clock) as log:
        assert log.low_watermark_ms() == T0 + 500  # idle: the next stamp is now or later
        held.hold()
        appender = threading.Thread(target=log.append, args=([b"pending"],))
        appender.start()
        assert held.written.wait(10)
        clock.now_ms = T0 + 900
        assert log.low_watermark_ms() == T0 + 500  # stamped, not readable yet
        held.release.set()
        appender.join()
        assert log.low_watermark_ms() == T0 + 900
        clock.now_ms = T0  # the wall clock steps back: stamps hold at the last one
        log.append([b"later"])
        assert [r.timestamp_ms for r in read_all(log)] == [T0 + 500, T0 + 500]
        assert log.low_watermark_ms() == T0 + 500


def test_failed_sync_stops_appends_until_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    log = FileLog(tmp_path, LogConfig())
    log.append([b"kept"])
    monkeypatch.setattr(_group_commit, "_datasync", broken)
    with pytest.raises(UnavailableError):
        log.append([b"lost"])
    monkeypatch.undo()
    with pytest.raises(UnavailableError, match="reopen"):
        log.append([b"refused"])
    assert [r.value for r in log.read(0)] == [b"kept"]
    log.close()
    with FileLog(tmp_path, LogConfig()) as log:
        # The failed batch was written but is cut back, so it does not come back.
        assert [r.value for r in log.read(0)] == [b"kept"]
        assert log.append([b"again"]).first_offset == 1


def test_one_member_per_group(tmp_path: Path) -> None:
    with FileLog(tmp_path, LogConfig()) as log:
        first = log.consumer("g", "a")
        with pytest.raises(ConflictError):
            log.consumer("g", "b")
        other = log.consumer("other")
        first.close()
        log.consumer("g", "b")
        other.commit(0)
    assert (tmp_path / "consumers" / "other.offset").read_text() == "0\n"


def test_consumer_edge_cases(tmp_path: Path) -> None:
    with FileLog(tmp_path, LogConfig()) as log:
        with pytest.raises(ValidationError):
            log.consumer("../escape")
        consumer = log.consumer("c")
        with pytest.raises(OffsetOutOfRangeError):
            consumer.commit(1)
        with pytest.raises(OffsetOutOfRangeError):
            consumer.seek(1)
        with pytest.raises(ValidationError):
            log.read(0, 0)
        waiter_error: list[BaseException] = []

        def wait() -> None:
            try:
                consumer.poll(timeout_s=30)
            except LogClosedError as exc:
                waiter_error.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)
    waiter.join(5)
    assert not waiter.is_alive()
    assert len(waiter_error) == 1
    with pytest.raises(LogClosedError):
        consumer.poll()


def test_directory_is_locked_against_a_second_writer(tmp_path: Path) -> None:
    with FileLog(tmp_path, LogConfig()), pytest.raises(ConflictError):
        FileLog(tmp_path, LogConfig())
    FileLog(tmp_path, LogConfig()).close()


def test_close_drains_queued_appends(tmp_path: Path) -> None:
    log = FileLog(tmp_path, LogConfig())
    results: list[int] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        for _ in range(20):
            try:
                results.append(log.append([b"x"]).first_offset)
            except LogClosedError as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.01)
    log.close()
    for t in threads:
        t.join()
    with FileLog(tmp_path, LogConfig()) as log:
        # Every acknowledged append is there; nothing else is.
        assert sorted(results) == list(range(log.end_offset))


def test_open_log_picks_the_file_backend(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path))
    with open_log(config, "catalog") as log:
        assert isinstance(log, FileLog)
        log.append([b"item"])
    assert segment_files(tmp_path / "log" / "catalog")
