"""``LogFollower``: a file log read from another process while its writer appends.

What a follower returns is always what the writer made durable, in order, once; never
a frame being written; and a prefix of what the writer's own recovery keeps after it
is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.config import LogConfig, load_config
from hotshelf.errors import (
    ConflictError,
    CorruptLogError,
    LogClosedError,
    NotFoundError,
    OffsetOutOfRangeError,
)
from hotshelf.log import EventLog, FileLog, LogFollower, LogRecord, open_reader
from tests.log.test_file_log import Clock, HeldSync, fill_hours

SMALL = LogConfig(segment_max_bytes=600, segment_roll="size", index_interval_bytes=128)


def read_all(log: EventLog, offset: int | None = None, chunk: int = 1000) -> list[LogRecord]:
    offset = log.start_offset if offset is None else offset
    end = log.end_offset
    out: list[LogRecord] = []
    while offset < end:
        records = log.read(offset, chunk)
        assert records, f"no records at {offset} below end {end}"
        out += records
        offset = records[-1].offset + 1
    return out


def test_a_follower_sees_only_what_the_writer_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldSync(monkeypatch)
    with FileLog(tmp_path, LogConfig()) as writer, LogFollower(tmp_path, LogConfig()) as follower:
        writer.append([b"first"])
        held.hold()
        appender = threading.Thread(target=writer.append, args=([b"pending"] * 3,))
        appender.start()
        assert held.written.wait(10)
        (segment,) = tmp_path.glob("*/*/*.log")
        assert segment.stat().st_size > 20  # the group is in the file, not yet synced
        assert follower.end_offset == 1
        assert [r.value for r in follower.read(0)] == [b"first"]
        consumer = follower.consumer("watcher")
        assert [r.value for r in consumer.poll()] == [b"first"]
        assert consumer.poll(timeout_s=0.05) == []
        held.release.set()
        appender.join()
        assert [r.value for r in consumer.poll(timeout_s=5)] == [b"pending"] * 3
        assert follower.verify().ok


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.integers(1, 9), min_size=1, max_size=40),
    reads=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 50)), min_size=1, max_size=10),
)
def test_a_follower_reads_exactly_what_the_writer_reads(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[int],
    reads: list[tuple[float, int]],
) -> None:
    directory = tmp_path_factory.mktemp("log")
    with FileLog(directory, SMALL) as writer, LogFollower(directory, SMALL) as follower:
        for n, size in enumerate(batches):
            writer.append([f"{n}-{i}-".encode() * (1 + i % 4) for i in range(size)])
            # reads between appends: the follower's view of the last segment moves on
            at = int(reads[n % len(reads)][0] * writer.end_offset)
            limit = reads[n % len(reads)][1]
            assert follower.read(at, limit) == writer.read(at, limit)
        assert follower.end_offset == writer.end_offset == sum(batches)
        assert follower.stats() == writer.stats()
        assert read_all(follower) == read_all(writer)
        for fraction, limit in reads:
            at = int(fraction * writer.end_offset)
            assert follower.read(at, limit) == writer.read(at, limit)
        assert follower.verify() == writer.verify()


_WRITER = """
import sys, time
from hotshelf.config import LogConfig
from hotshelf.log import FileLog
config = LogConfig(segment_max_bytes=2000, segment_roll="size")
with FileLog(sys.argv[1], config) as log:
    print("open", flush=True)
    for n in range(int(sys.argv[2])):
        log.append([f"{n}-{i}".encode() * (1 + n % 5) for i in range(1 + n % 7)])
"""


def _expected(batches: int) -> list[bytes]:
    return [f"{n}-{i}".encode() * (1 + n % 5) for n in range(batches) for i in range(1 + n % 7)]


def _start_writer(directory: Path, batches: int) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory), str(batches)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "open"
    return writer


def test_a_follower_in_another_process_gets_every_record_once_in_order(tmp_path: Path) -> None:
    writer = _start_writer(tmp_path, 400)
    seen: list[LogRecord] = []
    with LogFollower(tmp_path, SMALL) as follower:
        consumer = follower.consumer("copy")
        while True:
            exited = writer.poll() is not None
            batch = consumer.poll(max_records=37, timeout_s=0.05)
            seen += batch
            if exited and not batch:
                break
    assert writer.wait() == 0
    assert writer.stdout is not None
    writer.stdout.close()
    assert [r.offset for r in seen] == list(range(len(seen)))
    assert [r.value for r in seen] == _expected(400)
    assert len(list(tmp_path.glob("*/*/*.log"))) > 5  # it followed across segment rolls


def test_what_a_follower_saw_survives_the_writer_being_killed(tmp_path: Path) -> None:
    writer = _start_writer(tmp_path, 10**9)
    seen: list[LogRecord] = []
    with LogFollower(tmp_path, SMALL) as follower:
        consumer = follower.consumer("copy")
        while len(seen) < 3000:
            seen += consumer.poll(max_records=500, timeout_s=1)
        os.kill(writer.pid, signal.SIGKILL)  # mid-append, most likely
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
        seen += consumer.poll(max_records=10**6)
    with FileLog(tmp_path, LogConfig(segment_max_bytes=2000, segment_roll="size")) as reopened:
        kept = read_all(reopened)
        assert kept[: len(seen)] == seen  # nothing a follower read is lost by recovery
        assert reopened.verify().ok


def test_retention_by_the_writer_moves_the_followers_start(tmp_path: Path) -> None:
    clock = Clock()
    with FileLog(tmp_path, LogConfig(retention_hours=2.5), clock=clock) as writer:
        fill_hours(writer, clock, 6)  # 10 records an hour, one segment each
        follower = LogFollower(tmp_path, LogConfig())
        consumer = follower.consumer("slow")
        assert [r.offset for r in consumer.poll(max_records=5)] == [0, 1, 2, 3, 4]
        assert writer.apply_retention() == 30
        assert (follower.start_offset, follower.end_offset) == (30, 60)
        with pytest.raises(OffsetOutOfRangeError):
            follower.read(29)
        assert follower.read(30, 1)[0].offset == 30
        assert consumer.poll(max_records=1)[0].offset == 30  # moved up to the start
        assert follower.stats() == writer.stats()
        follower.close()


def test_a_follower_is_read_only_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="never opened"):
        LogFollower(tmp_path, LogConfig())
    with FileLog(tmp_path, LogConfig()) as writer:
        writer.append([b"a"])
        follower = LogFollower(tmp_path, LogConfig())
        with pytest.raises(ConflictError, match="another process"):
            follower.append([b"b"])
        assert follower.apply_retention(10**15) == 0
        assert writer.end_offset == 1
        with pytest.raises(OffsetOutOfRangeError):
            follower.read(2)
        consumer = follower.consumer("g")
        with pytest.raises(OffsetOutOfRangeError):
            consumer.commit(5)
        consumer.commit(1)
        assert consumer.committed() == 1
        assert not (tmp_path / "consumers").exists()  # a follower's groups live in memory
        outcome: list[BaseException] = []

        def wait() -> None:
            try:
                follower.wait_for(1, 30)
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)
        follower.close()
        waiter.join(5)
        assert not waiter.is_alive()
        assert [type(exc) for exc in outcome] == [LogClosedError]
        with pytest.raises(LogClosedError):
            follower.read(0)


def test_a_torn_tail_marker_is_a_clear_error_until_the_writer_reopens(tmp_path: Path) -> None:
    with FileLog(tmp_path, LogConfig()) as writer:
        writer.append([b"a", b"b"])
    marker = tmp_path / "tail"
    raw = bytearray(marker.read_bytes())
    raw[20] ^= 0xFF  # what a writer killed in the middle of the marker's pwrite leaves
    marker.write_bytes(bytes(raw))
    follower = LogFollower(tmp_path, LogConfig())
    with pytest.raises(CorruptLogError, match="tail marker"):
        follower.read(0)
    with FileLog(tmp_path, LogConfig()):
        assert [r.value for r in follower.read(0)] == [b"a", b"b"]
    follower.close()


def test_open_reader_follows_a_log_another_writer_holds(tmp_path: Path) -> None:
    cfg = load_config(overrides=[f"data_dir={json.dumps(str(tmp_path))}"], environ={})
    log, following = open_reader(cfg, "events")
    assert not following
    assert isinstance(log, FileLog)
    log.append([b"x"])
    other, following = open_reader(cfg, "events")  # the first still holds the lock
    assert following
    assert isinstance(other, LogFollower)
    assert [r.value for r in other.read(0)] == [b"x"]
    other.close()
    log.close()


def test_log_commands_read_a_live_servers_log(tmp_path: Path) -> None:
    cfg = load_config(overrides=[f"data_dir={json.dumps(str(tmp_path))}"], environ={})
    runner = CliRunner()
    with FileLog(tmp_path / "log" / "events", cfg.log) as live:
        from tests.cli.test_log_cmds import _fill_log

        _fill_log(live, 30)
        result = runner.invoke(app, ["log", "inspect", "--data-dir", str(tmp_path), "--limit", "2"])
        assert result.exit_code == 0, result.stderr
        assert "following the log" in result.stderr
        assert "offsets 0..30" in result.stderr
        result = runner.invoke(app, ["log", "verify", "--data-dir", str(tmp_path), "-t", "events"])
        assert result.exit_code == 0, result.stderr

        def later() -> None:
            time.sleep(0.3)
            _fill_log(live, 10, first=30)

        appender = threading.Thread(target=later)
        appender.start()
        args = [
            "log",
            "replay",
            "--data-dir",
            str(tmp_path),
            "--follow",
            "--from",
            "25",
            "--to",
            "40",
        ]
        result = runner.invoke(app, args)
        appender.join()
        assert result.exit_code == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["record"]["event_id"] for r in rows] == [f"e{i}" for i in range(25, 40)]
