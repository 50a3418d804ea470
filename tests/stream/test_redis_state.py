"""``RedisSnapshotStore`` and ``RemoteState`` against a real redis-server."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis
from redis.crc import key_slot

from hotshelf.config import Config, LogConfig
from hotshelf.errors import UnavailableError
from hotshelf.events import EventType, decode_stored_event, encode_stored_event
from hotshelf.log import FileLog
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.stream import RedisSnapshotStore, RemoteState, StreamProcessor
from hotshelf.stream import default_bot_filter_factory as bot_filters
from hotshelf.stream._snapshot import decode_snapshot
from hotshelf.testing import RedisServer, find_redis_server, free_port
from tests.stream.simulated import config, open_logs, stored, upserts

pytestmark = pytest.mark.redis

N_EVENTS = 3000


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def redis_config(tmp_path: Path, url: str, partitions: int = 2) -> Config:
    cfg = config(tmp_path, partitions=partitions, remote_refresh_s=0.5)
    return msgspec.structs.replace(cfg, log=LogConfig(fsync=False, redis_url=url))


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[dict[str, FileLog]]:
    events_log, catalog_log = open_logs(tmp_path / "log", config(tmp_path))
    sim = StoreSimulator(SimConfig(seed=11, n_items=200))
    catalog_log.append(upserts(sim.catalog()))
    events_log.append([encode_stored_event(e) for e in stored(sim.events(N_EVENTS))])
    yield {"events": events_log, "catalog": catalog_log}
    events_log.close()
    catalog_log.close()


def process(cfg: Config, logs: dict[str, FileLog], i: int) -> StreamProcessor:
    """Partition ``i`` caught up and closed: its last snapshot is in Redis."""
    store = RedisSnapshotStore(cfg.log, (i, cfg.stream.partitions))
    processor = StreamProcessor(
        cfg, logs["events"], logs["catalog"], bot_filters(cfg),
        partition=(i, cfg.stream.partitions), snapshot_store=store, clock=lambda: 1 << 60,
    )  # fmt: skip
    processor.catch_up(timeout_s=60)
    processor.close()
    store.close()
    return processor


# -- RedisSnapshotStore --------------------------------------------------------


def test_the_store_replaces_the_snapshot_and_bumps_its_sequence(redis_url: str) -> None:
    store = RedisSnapshotStore(LogConfig(redis_url=redis_url), (1, 2))
    assert store.read() is None
    assert store.version() == (0, 0)
    before_ms = time.time() * 1000
    store.write(b"first")
    version, data = store.read_versioned()
    assert data == b"first"
    assert version.seq == 1
    assert before_ms - 1000 < version.written_ms < time.time() * 1000 + 1000
    store.write(b"second")
    assert store.read() == b"second"
    assert store.version().seq == 2
    store.clear()
    assert store.read() is None
    assert store.version().seq == 3  # moved on: readers see the change
    store.close()


def test_each_partition_has_its_own_keys_on_one_slot(redis_url: str) -> None:
    stores = [RedisSnapshotStore(LogConfig(redis_url=redis_url), (i, 2)) for i in range(2)]
    stores[0].write(b"zero")
    assert stores[1].read() is None
    for store in stores:
        assert key_slot(store.data_key.encode()) == key_slot(store.meta_key.encode())
        store.close()
    assert stores[0].data_key == "{hotshelf:stream:p0of2}:snapshot"


def test_an_unreachable_server_is_unavailable() -> None:
    store = RedisSnapshotStore(LogConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    for call in (store.read, store.version, lambda: store.write(b"x")):
        with pytest.raises(UnavailableError):
            call()
    store.close()


def test_a_processor_resumes_from_its_snapshot_in_redis(
    tmp_path: Path, redis_url: str, logs: dict[str, FileLog]
) -> None:
    cfg = redis_config(tmp_path, redis_url)
    first = process(cfg, logs, 0)
    store = RedisSnapshotStore(cfg.log, (0, 2))
    again = StreamProcessor(
        cfg, logs["events"], logs["catalog"], bot_filters(cfg),
        partition=(0, 2), snapshot_store=store,
    )  # fmt: skip
    assert again.offsets() == first.offsets() == {"events": N_EVENTS, "catalog": 200}
    assert again.snapshot_bytes() == store.read()
    again.close(snapshot=False)
    store.close()


# -- RemoteState ---------------------------------------------------------------


def test_remote_state_serves_nothing_until_there_are_snapshots(
    tmp_path: Path, redis_url: str, logs: dict[str, FileLog]
) -> None:
    cfg = redis_config(tmp_path, redis_url)
    with RemoteState(cfg, logs=logs) as remote:
        with remote.reading() as view:
            assert sum(view.counts().events.values()) == 0
        assert remote.freshness is None
        assert remote.lag() == {
            "p0of2": {"events": N_EVENTS, "catalog": 200},
            "p1of2": {"events": N_EVENTS, "catalog": 200},
        }
        assert remote.bot_verdicts() == []


def test_remote_state_merges_every_partition(
    tmp_path: Path, redis_url: str, logs: dict[str, FileLog]
) -> None:
    cfg = redis_config(tmp_path, redis_url)
    parts = [process(cfg, logs, i) for i in range(2)]
    with RemoteState(cfg, logs=logs) as remote:
        with remote.reading() as view:
            assert sum(view.counts().events.values()) == N_EVENTS
            assert len(view.popular(k=10)) == 10
        assert remote.lag() == {name: {"events": 0, "catalog": 0} for name in ("p0of2", "p1of2")}
        assert remote.offsets()["p1of2"] == {"events": N_EVENTS, "catalog": 200}
        freshness = remote.freshness
        assert freshness is not None
        assert 0 <= freshness < 30
        impressions = sum(
            decode_stored_event(r.value).type is EventType.IMPRESSION
            for r in logs["events"].read(0, N_EVENTS)
        )
        assert remote.bot_stats()["checked"] == N_EVENTS - impressions  # served, not judged
        flagged = sum(p.bot_stats()["flagged"] for p in parts)
        assert remote.bot_stats()["flagged"] == flagged
        verdicts = remote.bot_verdicts(limit=1000)
        assert verdicts
        seen = [v.last_seen_ms for v in verdicts]
        assert seen == sorted(seen, reverse=True)
        assert len({(v.kind, v.key) for v in verdicts}) == len(verdicts)
        assert remote.bot_verdicts(limit=3) == verdicts[:3]
        assert remote.problems() == {}


def test_remote_state_refreshes_at_most_every_interval_and_only_what_changed(
    tmp_path: Path, redis_url: str, logs: dict[str, FileLog]
) -> None:
    cfg = redis_config(tmp_path, redis_url)
    clock = Clock()
    remote = RemoteState(cfg, logs=logs, clock=clock)
    assert remote.refresh() is False  # nothing written yet: nothing changed
    process(cfg, logs, 0)
    assert remote.refresh() is False  # too soon
    clock.now += 0.5
    before = remote._parts[1]
    assert remote.refresh() is True
    assert remote._parts[1] is before  # partition 1 did not change: not fetched again
    with remote.reading() as view:
        counted = sum(view.counts().events.values())
    assert 0 < counted < N_EVENTS  # partition 0's share only
    clock.now += 0.5
    assert remote.refresh() is False  # versions unchanged
    process(cfg, logs, 1)
    assert remote.refresh(force=True) is True
    with remote.reading() as view:
        assert sum(view.counts().events.values()) == N_EVENTS
    remote.close()


def test_remote_state_reports_a_snapshot_it_cannot_use(
    tmp_path: Path, redis_url: str, logs: dict[str, FileLog]
) -> None:
    cfg = redis_config(tmp_path, redis_url)
    process(cfg, logs, 0)
    other = msgspec.structs.replace(cfg.stream, visitor_horizon_s=60.0)
    with RemoteState(msgspec.structs.replace(cfg, stream=other), logs=logs) as remote:
        with remote.reading() as view:
            assert sum(view.counts().events.values()) == 0
        assert "settings differ" in remote.problems()["p0of2"]
    redis.Redis.from_url(redis_url).set("{hotshelf:stream:p1of2}:snapshot", b"junk")
    redis.Redis.from_url(redis_url).hincrby("{hotshelf:stream:p1of2}:meta", "seq", 1)
    with RemoteState(cfg, logs=logs) as remote:
        remote.refresh()
        assert set(remote.problems()) == {"p1of2"}
        with remote.reading() as view:  # partition 0 is still served
            assert Counter(view.counts().events).total() > 0


def test_a_snapshot_in_redis_is_what_the_processor_wrote(
    tmp_path: Path, redis_url: str, logs: dict[str, FileLog]
) -> None:
    cfg = redis_config(tmp_path, redis_url)
    processor = process(cfg, logs, 1)
    data = RedisSnapshotStore(cfg.log, (1, 2)).read()
    assert data is not None
    assert decode_snapshot(data).lanes["rt"].offsets == processor.offsets()


def test_remote_state_serves_its_last_state_while_redis_is_down(
    tmp_path: Path, logs: dict[str, FileLog]
) -> None:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary")
    (tmp_path / "redis").mkdir()
    server = RedisServer(binary, tmp_path / "redis")
    server.start()
    try:
        cfg = redis_config(tmp_path, server.url)
        for i in range(2):
            process(cfg, logs, i)
        clock = Clock()
        with RemoteState(cfg, logs=logs, clock=clock) as remote:
            with remote.reading() as view:
                assert sum(view.counts().events.values()) == N_EVENTS
            server.stop()
            clock.now += 5.0
            with remote.reading() as view:  # stale, not an error
                assert sum(view.counts().events.values()) == N_EVENTS
            freshness = remote.freshness
            assert freshness is not None
            assert freshness >= 5.0
    finally:
        server.stop()


def test_remote_state_raises_when_redis_was_never_reached(tmp_path: Path) -> None:
    cfg = redis_config(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    with RemoteState(cfg) as remote:
        for _ in range(2):
            with pytest.raises(UnavailableError), remote.reading():
                pass
