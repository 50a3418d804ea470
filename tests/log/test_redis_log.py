"""RedisStreamLog behaviour beyond the shared contract, against real redis-servers."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crc32c
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from hotshelf.config import LogConfig
from hotshelf.errors import (
    ConfigError,
    CorruptLogError,
    LogClosedError,
    LogError,
    OffsetOutOfRangeError,
    PayloadTooLargeError,
    UnavailableError,
    ValidationError,
)
from hotshelf.log._base import MAX_RECORD_BYTES, LogObserver, LogRecord
from hotshelf.log._redis_log import RedisStreamLog, map_redis_errors
from hotshelf.testing import RedisServer, find_redis_server

pytestmark = pytest.mark.redis

_topics = itertools.count()


def open_log(url: str, topic: str = "events", **settings: object) -> RedisStreamLog:
    config = LogConfig(backend="redis", redis_url=url, **settings)  # type: ignore[arg-type]
    return RedisStreamLog(config, topic)


@pytest.fixture
def log(redis_url: str) -> Iterator[RedisStreamLog]:
    with open_log(redis_url) as opened:
        yield opened


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, to stop and restart; fsyncs every write."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary")
    server = RedisServer(binary, tmp_path, appendfsync="always")
    server.start()
    yield server
    server.stop()


def raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def values_of(records: list[LogRecord]) -> list[bytes]:
    return [r.value for r in records]


# -- layout and offsets --------------------------------------------------------


def test_ids_carry_offsets_and_keys_share_a_slot(log: RedisStreamLog, redis_url: str) -> None:
    log.append([b"a", b"b"])
    log.append([b"c"])
    client = raw(redis_url)
    entries: Any = client.xrange(log.stream_key)
    ids = [entry[0] for entry in entries]
    client.close()
    assert [int(i.split(b"-")[1]) for i in ids] == [1, 2, 3]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split(b"-"))))
    assert log.stream_key == "{hotshelf:events}:stream"
    assert len({key_slot(k.encode()) for k in (log.stream_key, log.meta_key, log.commits_key)}) == 1


def test_batch_records_share_the_accept_time(log: RedisStreamLog) -> None:
    before = int(time.time() * 1000)
    log.append([b"a", b"b", b"c"])
    stamps = {r.timestamp_ms for r in log.read(0)}
    assert len(stamps) == 1
    assert abs(stamps.pop() - before) < 5_000


def test_topics_and_prefixes_are_separate(redis_url: str) -> None:
    with open_log(redis_url, "a") as a, open_log(redis_url, "b") as b:
        a.append([b"1", b"2"])
        assert b.end_offset == 0
        assert b.append([b"x"]).first_offset == 0


def test_topic_with_braces_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigError):
        open_log(redis_url, "a}b")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=60),
    data=st.data(),
)
def test_any_offset_is_found_whatever_the_timestamps(
    redis_url: str, steps: list[int], data: st.DataObject
) -> None:
    # Entries written as the append script would, with arbitrary millisecond jumps
    # (0 = same millisecond), so the offset -> ID search sees every shape of stream.
    with open_log(redis_url, f"prop{next(_topics)}") as log:
        client = raw(redis_url)
        ms = 1_600_000_000_000
        for offset, step in enumerate(steps):
            ms += step
            value = b"%d" % offset
            fields = {"v": value, "c": crc32c.crc32c(value)}
            client.xadd(log.stream_key, fields, id=f"{ms}-{offset + 1}")  # type: ignore[arg-type]
        client.hset(log.meta_key, mapping={"next": len(steps), "ms": ms})
        client.close()
        offset = data.draw(st.integers(min_value=0, max_value=len(steps) - 1))
        count = data.draw(st.integers(min_value=1, max_value=5))
        records = log.read(offset, count)
        assert [r.offset for r in records] == list(range(offset, min(offset + count, len(steps))))
        assert [r.value for r in records] == [b"%d" % r.offset for r in records]


def test_sequential_reads_cross_milliseconds(log: RedisStreamLog) -> None:
    for i in range(30):
        log.append([b"%d-%d" % (i, j) for j in range(7)])
        time.sleep(0.002)
    got, offset = [], 0
    while records := log.read(offset, 11):
        got.extend(records)
        offset = records[-1].offset + 1
    assert [r.offset for r in got] == list(range(210))
    assert [r.value for r in got[8:10]] == [b"1-1", b"1-2"]


def test_lost_meta_hash_is_rebuilt_from_the_stream(log: RedisStreamLog, redis_url: str) -> None:
    log.append([b"a", b"b", b"c"])
    client = raw(redis_url)
    client.delete(log.meta_key)
    client.close()
    assert log.end_offset == 3
    assert log.append([b"d"]).first_offset == 3
    assert [r.value for r in log.read(2)] == [b"c", b"d"]


def test_observer_sees_appends(redis_url: str) -> None:
    seen: list[int] = []

    class Counting(LogObserver):
        def on_append(self, records: int, seconds: float) -> None:
            seen.append(records)

    config = LogConfig(backend="redis", redis_url=redis_url)
    with RedisStreamLog(config, "obs", observer=Counting()) as log:
        log.append([b"a", b"b"])
        asyncio.run(log.append_async([b"c"]))
    assert seen == [2, 1]


# -- many writers --------------------------------------------------------------

_WRITER = """
import json, sys
from hotshelf.config import LogConfig
from hotshelf.log._redis_log import RedisStreamLog
url, name = sys.argv[1], sys.argv[2]
with RedisStreamLog(LogConfig(backend="redis", redis_url=url), "shared") as log:
    out = [log.append([f"{name}/{i}/{j}".encode() for j in range(5)]).first_offset
           for i in range(60)]
print(json.dumps(out))
"""


def test_concurrent_processes_get_dense_disjoint_offsets(redis_url: str) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, redis_url, f"p{n}"], stdout=subprocess.PIPE
        )
        for n in range(4)
    ]
    firsts = {f"p{n}": json.loads(w.communicate(timeout=60)[0]) for n, w in enumerate(writers)}
    assert all(w.returncode == 0 for w in writers)
    with open_log(redis_url, "shared") as log:
        records = log.read(0, 10_000)
    assert [r.offset for r in records] == list(range(4 * 60 * 5))
    for name, starts in firsts.items():
        for i, first in enumerate(starts):  # each batch is contiguous, in order
            batch = records[first : first + 5]
            assert [r.value for r in batch] == [f"{name}/{i}/{j}".encode() for j in range(5)]


async def _append_concurrently(log: RedisStreamLog, tasks: int) -> list[int]:
    results = await asyncio.gather(*(log.append_async([b"x", b"y"]) for _ in range(tasks)))
    return sorted(r.first_offset for r in results)


def test_concurrent_async_appends(log: RedisStreamLog) -> None:
    assert asyncio.run(_append_concurrently(log, 32)) == list(range(0, 64, 2))
    # a second event loop gets its own connections
    assert asyncio.run(_append_concurrently(log, 4)) == list(range(64, 72, 2))


# -- consumer groups -----------------------------------------------------------


def drain(consumer: object, rounds: int = 50) -> list[int]:
    got: list[int] = []
    for _ in range(rounds):
        batch = consumer.poll(7)  # type: ignore[attr-defined]
        if not batch:
            break
        got.extend(r.offset for r in batch)
    return got


def test_two_members_share_the_work(log: RedisStreamLog) -> None:
    log.append([b"%d" % i for i in range(100)])
    a, b = log.consumer("g", "a"), log.consumer("g", "b")
    seen_a: list[int] = []
    seen_b: list[int] = []
    while True:
        batch_a, batch_b = a.poll(9), b.poll(9)
        if not batch_a and not batch_b:
            break
        seen_a += [r.offset for r in batch_a]
        seen_b += [r.offset for r in batch_b]
    assert seen_a
    assert seen_b
    assert not set(seen_a) & set(seen_b)
    assert sorted(seen_a + seen_b) == list(range(100))


def test_restarted_member_gets_its_uncommitted_records_first(log: RedisStreamLog) -> None:
    log.append([b"%d" % i for i in range(20)])
    first = log.consumer("g", "a")
    assert [r.offset for r in first.poll(10)] == list(range(10))
    first.commit(4)
    again = log.consumer("g", "a")  # same member after a restart
    assert [r.offset for r in again.poll(100)] == list(range(4, 10))
    assert [r.offset for r in again.poll(100)] == list(range(10, 20))
    assert again.committed() == 4


def test_dead_members_records_are_claimed(redis_url: str) -> None:
    with open_log(redis_url, redis_claim_idle_ms=150) as log:
        log.append([b"%d" % i for i in range(10)])
        dead = log.consumer("g", "dead")
        assert len(dead.poll(6)) == 6  # then it dies without committing
        alive = log.consumer("g", "alive")
        assert [r.offset for r in alive.poll(100)] == [6, 7, 8, 9]
        assert alive.poll(100) == []  # dead's records are not idle long enough yet
        time.sleep(0.2)
        assert [r.offset for r in alive.poll(100)] == [0, 1, 2, 3, 4, 5]
        alive.commit(10)
        time.sleep(0.2)
        assert alive.poll(100) == []  # nothing left pending anywhere
        client = raw(redis_url)
        assert client.xpending(log.stream_key, "g")["pending"] == 0
        client.close()


def test_member_does_not_reclaim_its_own_slow_records(redis_url: str) -> None:
    with open_log(redis_url, redis_claim_idle_ms=50) as log:
        log.append([b"a", b"b"])
        slow = log.consumer("g", "slow")
        assert len(slow.poll(10)) == 2
        time.sleep(0.1)
        assert slow.poll(10) == []


def test_trimmed_pending_records_are_skipped(redis_url: str) -> None:
    with open_log(redis_url, redis_maxlen=5) as log:
        log.append([b"%d" % i for i in range(5)])
        member = log.consumer("g", "a")
        assert len(member.poll(3)) == 3
        log.append([b"%d" % i for i in range(5, 10)])
        assert log.apply_retention() > 0
        assert log.start_offset == 5
        again = log.consumer("g", "a")  # offsets 0..2 pending, but gone from the stream
        assert [r.offset for r in again.poll(100)] == list(range(5, 10))


def test_poll_blocks_until_a_record_arrives(log: RedisStreamLog) -> None:
    member = log.consumer("g", "a")
    began = time.monotonic()
    assert member.poll(10, timeout_s=0.2) == []
    assert time.monotonic() - began >= 0.18


def test_seek_replays_without_stealing_from_the_group(log: RedisStreamLog) -> None:
    log.append([b"%d" % i for i in range(10)])
    member = log.consumer("g", "a")
    assert len(member.poll(100)) == 10
    member.commit(10)
    member.seek(3)
    assert [r.offset for r in member.poll(4)] == [3, 4, 5, 6]
    assert [r.offset for r in member.poll(100)] == [7, 8, 9]
    log.append([b"10"])
    assert [r.offset for r in member.poll(100)] == [10]  # back on group delivery
    assert member.committed() == 10


# -- failures ------------------------------------------------------------------


def test_acknowledged_data_survives_a_server_crash(private_redis: RedisServer) -> None:
    with open_log(private_redis.url) as log:
        log.append([b"a", b"b"])
        member = log.consumer("g", "m")
        member.poll(1)
        member.commit(1)
        assert private_redis.proc is not None
        private_redis.proc.kill()  # SIGKILL: no shutdown, only what the AOF holds
        private_redis.proc.wait()
        private_redis.start()
        assert [r.value for r in log.read(0)] == [b"a", b"b"]
        assert log.append([b"c"]).first_offset == 2
        assert member.committed() == 1
        assert [r.offset for r in log.consumer("g", "m").poll(10)] == [1, 2]


def test_server_down_is_unavailable_until_it_returns(private_redis: RedisServer) -> None:
    with open_log(private_redis.url) as log:
        log.append([b"a"])
        member = log.consumer("g", "m")
        private_redis.stop()
        for call in (
            lambda: log.append([b"b"]),
            lambda: asyncio.run(log.append_async([b"b"])),
            lambda: log.read(0),
            lambda: log.end_offset,
            lambda: member.poll(1),
            lambda: member.commit(1),
        ):
            with pytest.raises(UnavailableError) as caught:
                call()
            assert type(caught.value) is UnavailableError
            assert caught.value.status == 503
        private_redis.start()
        assert log.append([b"b"]).first_offset == 1
        assert asyncio.run(log.append_async([b"c"])).first_offset == 2
        assert [r.offset for r in member.poll(10)] == [0, 1, 2]


def test_redis_errors_are_translated() -> None:
    cases = [
        (redis.ConnectionError("refused"), UnavailableError),
        (redis.TimeoutError("slow"), UnavailableError),
        (redis.ResponseError("OOM command not allowed"), UnavailableError),
        (redis.ResponseError("READONLY You can't write against a replica."), UnavailableError),
        (redis.ResponseError("ERR something else"), LogError),
        (redis.RedisError("other"), LogError),
    ]
    for error, expected in cases:
        with pytest.raises(expected) as caught, map_redis_errors("testing"):
            raise error
        assert type(caught.value) is expected
        assert caught.value.__cause__ is error


def test_closed_log_refuses_calls(redis_url: str) -> None:
    log = open_log(redis_url)
    member = log.consumer("g")
    log.close()
    log.close()  # twice is fine
    with pytest.raises(LogClosedError):
        log.append([b"a"])
    with pytest.raises(LogClosedError):
        member.poll()


# -- retention and verification ------------------------------------------------


def test_retention_drops_records_older_than_the_age_limit(redis_url: str) -> None:
    with open_log(redis_url, retention_hours=1.0) as log:
        log.append([b"old1", b"old2"])
        time.sleep(0.01)
        log.append([b"new"])
        new_ms = log.read(2)[0].timestamp_ms
        assert log.apply_retention(now_ms=new_ms + 3_600_000) == 2
        assert log.start_offset == 2
        assert log.end_offset == 3
        with pytest.raises(OffsetOutOfRangeError):
            log.read(0)
        assert log.apply_retention(now_ms=new_ms + 3_600_001) == 1
        assert log.start_offset == log.end_offset == 3
        assert log.read(3) == []
        assert log.append([b"next"]).first_offset == 3


def test_retention_by_count(redis_url: str) -> None:
    with open_log(redis_url, retention_hours=None, redis_maxlen=10) as log:
        for _ in range(10):
            log.append([b"x"] * 20)
        log.apply_retention()
        assert log.stats().end_offset - log.stats().start_offset == 10
        assert log.verify().ok


def test_verify_reports_a_deleted_entry_as_a_gap(log: RedisStreamLog, redis_url: str) -> None:
    log.append([b"%d" % i for i in range(10)])
    assert log.verify().ok
    client = raw(redis_url)
    entries: Any = client.xrange(log.stream_key)
    victim = entries[4][0]
    client.xdel(log.stream_key, victim)
    client.close()
    report = log.verify()
    assert not report.ok
    assert [(d.first_offset, d.last_offset) for d in report.damage] == [(4, 4)]
    assert report.records == 9
    assert [r.offset for r in log.read(0)] == [0, 1, 2, 3]
    with pytest.raises(CorruptLogError) as caught:
        log.read(4)
    assert (caught.value.first, caught.value.last) == (4, 4)
    assert [r.offset for r in log.read(5)] == [5, 6, 7, 8, 9]


def test_verify_reports_a_missing_tail_and_a_bad_checksum(
    log: RedisStreamLog, redis_url: str
) -> None:
    client = raw(redis_url)
    client.xadd(log.stream_key, {"v": b"good", "c": crc32c.crc32c(b"good")}, id="1000-1")
    client.xadd(log.stream_key, {"v": b"evil", "c": crc32c.crc32c(b"good")}, id="1000-2")
    client.hset(log.meta_key, mapping={"next": 4, "ms": 1000})
    client.close()
    report = log.verify()
    assert [(d.first_offset, d.last_offset) for d in report.damage] == [(1, 1), (2, 3)]
    assert values_of(log.read(0)) == [b"good"]  # stops before the bad entry
    with pytest.raises(CorruptLogError):
        log.read(1)
    with pytest.raises(CorruptLogError):
        log.read(2)


def test_stats(log: RedisStreamLog) -> None:
    log.append([b"x" * 150] * 100)
    stats = log.stats()
    assert (stats.start_offset, stats.end_offset, stats.segments) == (0, 100, 1)
    assert stats.size_bytes > 100 * 150


def test_seek_past_the_group_position_skips_ahead(log: RedisStreamLog) -> None:
    log.append([b"%d" % i for i in range(10)])
    member = log.consumer("g", "a")
    assert [r.offset for r in member.poll(2)] == [0, 1]
    member.seek(6)
    assert [r.offset for r in member.poll(100)] == [6, 7, 8, 9]
    assert member.committed() == 0
    with pytest.raises(OffsetOutOfRangeError):
        member.seek(11)


def test_commit_without_poll_moves_the_group(log: RedisStreamLog) -> None:
    log.append([b"%d" % i for i in range(10)])
    log.consumer("g", "a").commit(7)
    other = log.consumer("g", "b")
    assert other.committed() == 7
    assert [r.offset for r in other.poll(100)] == [7, 8, 9]
    with pytest.raises(ValidationError):
        log.consumer("bad group")


def test_bad_batches_are_refused(log: RedisStreamLog) -> None:
    with pytest.raises(ValidationError):
        log.append([])
    with pytest.raises(ValidationError):
        log.append(["text"])  # type: ignore[list-item]
    with pytest.raises(PayloadTooLargeError):
        log.append([b"x" * (MAX_RECORD_BYTES + 1)])
    assert log.append([bytearray(b"ok")]).first_offset == 0  # type: ignore[list-item]
    assert log.read(0)[0].value == b"ok"


def test_commit_past_the_end_is_refused(log: RedisStreamLog) -> None:
    log.append([b"a", b"b"])
    member = log.consumer("g")
    member.commit(2)
    for bad in (3, -1):
        with pytest.raises(OffsetOutOfRangeError):
            member.commit(bad)
    assert member.committed() == 2
    member.close()
    with pytest.raises(LogClosedError):
        member.poll()


def test_replay_overtaken_by_retention_goes_on_from_the_start(redis_url: str) -> None:
    with open_log(redis_url, retention_hours=None, redis_maxlen=4) as log:
        log.append([b"%d" % i for i in range(4)])
        member = log.consumer("g")
        assert len(member.poll(100)) == 4
        member.seek(0)
        log.append([b"4", b"5"])
        log.apply_retention()  # keeps 2..5
        assert [r.offset for r in member.poll(100)] == [2, 3]
        assert [r.offset for r in member.poll(100)] == [4, 5]


def test_retention_by_size_estimate(redis_url: str) -> None:
    with open_log(redis_url, retention_hours=None, retention_bytes=20_000) as log:
        log.append([b"x" * 150] * 1000)
        assert log.apply_retention() > 800
        assert 0 < log.stats().size_bytes < 40_000
