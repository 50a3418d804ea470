"""Partitions: each event is applied by exactly one partition, catalog by all, and a
snapshot is never restored under another partitioning."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotshelf.config import Config, StreamConfig
from hotshelf.errors import ConfigError
from hotshelf.events import EventType, StoredEvent, encode_stored_event
from hotshelf.log import FileLog
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.stream import Partition, StreamProcessor, default_bot_filter_factory
from hotshelf.stream._partition import (
    check_partition,
    parse_partition,
    partition_config,
    partition_of,
    visitor_key,
)
from hotshelf.stream._snapshot import SnapshotStore, decode_snapshot, settings_fingerprint
from hotshelf.stream._view import StateView
from tests.stream.simulated import config, open_logs, stored, upserts

N_EVENTS = 4000


@pytest.fixture(scope="module")
def traffic() -> tuple[list[bytes], list[StoredEvent]]:
    sim = StoreSimulator(SimConfig(seed=5, n_items=300, events_per_s=50.0))
    return upserts(sim.catalog()), list(stored(sim.events(N_EVENTS)))


@pytest.fixture
def logs(
    tmp_path: Path, traffic: tuple[list[bytes], list[StoredEvent]]
) -> Iterator[tuple[FileLog, FileLog]]:
    events_log, catalog_log = open_logs(tmp_path / "log", config(tmp_path))
    catalog, events = traffic
    catalog_log.append(catalog)
    events_log.append([encode_stored_event(e) for e in events])
    yield events_log, catalog_log
    events_log.close()
    catalog_log.close()


def run(
    cfg: Config, logs: tuple[FileLog, FileLog], partition: tuple[int, int] | None, bots: bool = True
) -> StreamProcessor:
    factory = default_bot_filter_factory(cfg) if bots else None
    processor = StreamProcessor(cfg, *logs, factory, partition=partition, clock=lambda: 1 << 60)
    processor.catch_up(timeout_s=60)
    return processor


def history_keys(processor: StreamProcessor) -> dict[str, set[str]]:
    state: Any = decode_snapshot(processor.snapshot_bytes()).lanes["rt"].state
    return {kind: set(state["history"][kind]["active"]) for kind in ("users", "sessions")}


def test_partitions_are_named_and_checked() -> None:
    assert parse_partition("1/3", 1) == Partition(1, 3)
    assert parse_partition("2", 4) == Partition(2, 4)
    assert Partition(1, 3).name == "p1of3"
    assert str(Partition(1, 3)) == "1/3"
    for bad in ("3/3", "-1/2", "0/0", "a/b", "1/"):
        with pytest.raises(ConfigError):
            parse_partition(bad, 1 if bad != "1/" else 0)
    with pytest.raises(ConfigError):
        check_partition((2, 2))


@given(
    st.lists(st.tuples(*[st.none() | st.text(max_size=8)] * 3), max_size=50),
    st.integers(1, 8),
)
def test_every_visitor_has_exactly_one_partition(
    visitors: list[tuple[str | None, str | None, str | None]], count: int
) -> None:
    for user, cookie, session in visitors:
        event = StoredEvent(
            event_id="e", type=EventType.VIEW, ts_ms=1, received_ms=1,
            user_id=user, cookie_id=cookie, session_id=session, item_id="i",
        )  # fmt: skip
        key = visitor_key(event)
        owners = [i for i in range(count) if partition_of(key, count) == i]
        assert len(owners) == 1
        if key is None:
            assert owners == [0]  # events of no visitor go to partition 0


def test_each_event_is_applied_by_exactly_one_partition(
    tmp_path: Path, logs: tuple[FileLog, FileLog], traffic: tuple[list[bytes], list[StoredEvent]]
) -> None:
    cfg = config(tmp_path / "state")
    whole = run(cfg, logs, None)
    parts = [run(cfg, logs, (i, 3)) for i in range(3)]
    _, events = traffic
    per_type = Counter(str(e.type) for e in events)
    with whole.reading() as view:
        assert +Counter(view.counts().events) == per_type
    summed: Counter[str] = Counter()
    for part in parts:
        with part.reading() as view:
            summed.update(view.counts().events)
        # every partition read the whole log: its offsets are the log's end
        assert part.offsets()["events"] == N_EVENTS
    assert +summed == per_type

    keys = [history_keys(part) for part in parts]
    for kind in ("users", "sessions"):
        union = set().union(*(k[kind] for k in keys))
        assert sum(len(k[kind]) for k in keys) == len(union)  # disjoint
        assert union == history_keys(whole)[kind]
    for i, k in enumerate(keys):
        assert all(partition_of(user, 3) == i for user in k["users"])
    for processor in (whole, *parts):
        processor.close()


def popular(processors: list[StreamProcessor]) -> list[tuple[str, float]]:
    """The top 20 over the processors' states summed; closes the processors."""
    view = StateView([p.state for p in processors])
    found = [(score.item_id, score.score) for score in view.popular(k=20)]
    for processor in processors:
        processor.close(snapshot=False)
    return found


def test_the_merge_is_exact_for_per_visitor_state(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    # No spike guard within reach, no bot filter (its IP checks see a partition's
    # share): what is left is keyed by visitor, so the partitions add up exactly.
    cfg = config(tmp_path / "state", spike_floor=1_000_000)
    alone = popular([run(cfg, logs, None, bots=False)])
    merged = popular([run(cfg, logs, (i, 3), bots=False) for i in range(3)])
    assert [item for item, _ in merged] == [item for item, _ in alone]
    assert [score for _, score in merged] == pytest.approx([score for _, score in alone])


def test_with_every_defence_on_the_merged_top_items_are_one_processors(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    cfg = config(tmp_path / "state")
    alone = {item for item, _ in popular([run(cfg, logs, None)])}
    merged = {item for item, _ in popular([run(cfg, logs, (i, 2)) for i in range(2)])}
    assert len(alone & merged) >= 18


def test_the_spike_floor_is_split_between_partitions() -> None:
    stream = StreamConfig(spike_floor=20)
    assert partition_config(stream, None) is stream
    assert partition_config(stream, Partition(0, 1)) is stream
    assert partition_config(stream, Partition(1, 3)).spike_floor == 7
    assert partition_config(stream, Partition(1, 3)).spike_mads == stream.spike_mads


def test_catalog_changes_reach_every_partition(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    cfg = config(tmp_path / "state")
    parts = [run(cfg, logs, (i, 2)) for i in range(2)]
    categories = [decode_snapshot(p.snapshot_bytes()).lanes["rt"].categories for p in parts]
    assert categories[0] == categories[1]
    assert len(categories[0]) == 300
    for part in parts:
        part.close()


def test_a_snapshot_is_never_restored_under_another_partitioning(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    cfg = config(tmp_path / "state")
    first = run(cfg, logs, (0, 2))
    first.close()  # writes its snapshot to data_dir/stream/p0of2/
    assert (cfg.data_path / "stream" / "p0of2" / SnapshotStore.NAME).exists()
    store = SnapshotStore(cfg.data_path / "stream" / "p0of2", fsync=False)
    factory = default_bot_filter_factory(cfg)
    for other in ((1, 2), (0, 3), None):
        again = StreamProcessor(cfg, *logs, factory, partition=other, snapshot_store=store)
        assert again.offsets()["events"] == 0, other  # rebuilt, not restored
        again.close(snapshot=False)
    same = StreamProcessor(cfg, *logs, factory, partition=(0, 2))
    assert same.offsets()["events"] == N_EVENTS
    same.close()


def test_partitions_commit_to_their_own_consumer_groups(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    cfg = config(tmp_path / "state")
    run(cfg, logs, (1, 2)).close()  # its last snapshot commits the offsets
    events_log, _ = logs
    assert events_log.consumer("stream.p1of2").committed() == N_EVENTS
    assert events_log.consumer("stream").committed() == 0


def test_the_fingerprint_holds_the_partitioning_only_when_there_is_one(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    readers = msgspec.structs.replace(cfg.stream, partitions=4, remote_refresh_s=9.0)
    reader_cfg = msgspec.structs.replace(cfg, stream=readers)
    assert settings_fingerprint(cfg, True) == settings_fingerprint(reader_cfg, True)
    assert settings_fingerprint(cfg, True, (0, 2)) == settings_fingerprint(reader_cfg, True, (0, 2))
    prints = {settings_fingerprint(cfg, True, p) for p in (None, (0, 1), (0, 2), (1, 2))}
    assert len(prints) == 4
