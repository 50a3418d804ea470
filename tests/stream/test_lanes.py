"""Lanes: real-time events go first, the batch lane keeps its share, and however the two
are interleaved the state ends the same; queries sum the lanes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from hotshelf.config import Config
from hotshelf.events import EventType, StoredEvent, encode_stored_event
from hotshelf.log import FileLog
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.stream import StreamProcessor, default_bot_filter_factory
from tests.stream.simulated import config, stored, upserts

# The freshness target for live events while a bulk import runs (issue 3: seconds).
RT_FRESHNESS_TARGET_MS = 1000


class Logs(NamedTuple):
    events: FileLog
    batch: FileLog
    catalog: FileLog


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    cfg = config(tmp_path)
    opened = Logs(*(FileLog(tmp_path / name, cfg.log) for name in ("ev", "batch", "cat")))
    yield opened
    for log in opened:
        log.close()


def laned(events: list[StoredEvent], lane: str) -> list[bytes]:
    return [encode_stored_event(msgspec.structs.replace(e, lane=lane)) for e in events]


def simulated(seed: int, n: int) -> tuple[StoreSimulator, list[StoredEvent]]:
    sim = StoreSimulator(SimConfig(seed=seed, n_items=300))
    return sim, list(stored(sim.events(n)))


def processor(cfg: Config, logs: Logs) -> StreamProcessor:
    return StreamProcessor(
        cfg, logs.events, logs.catalog, default_bot_filter_factory(cfg), batch_log=logs.batch
    )


def fill(logs: Logs, rt: int, batch: int) -> None:
    _, events = simulated(3, rt + batch)
    for log, lane, part in (
        (logs.batch, "batch", events[:batch]),
        (logs.events, "rt", events[batch:]),
    ):
        if part:
            log.append(laned(part, lane))
    time.sleep(0.01)  # past the catalog grace of the appends' stamps


def test_the_real_time_lane_goes_first_and_the_batch_lane_keeps_its_share(
    tmp_path: Path, logs: Logs
) -> None:
    cfg = config(tmp_path, catalog_grace_ms=1, batch_min_share=0.1)
    logs.catalog.append(upserts(simulated(3, 0)[0].catalog()))
    stream = processor(cfg, logs)
    stream.catch_up()  # the catalog: every round below takes events only
    fill(logs, rt=300, batch=5000)
    stream.run_once(1000)
    assert (stream.offsets()["events"], stream.offsets()["events.batch"]) == (300, 700)
    fill(logs, rt=5000, batch=0)
    stream.run_once(1000)
    # A backlog of live events takes all but the batch lane's guaranteed tenth.
    assert (stream.offsets()["events"], stream.offsets()["events.batch"]) == (1200, 800)
    assert stream.lane_lag() == {"rt": 4100, "batch": 4200}
    stream.close()


def test_any_interleaving_of_the_lanes_ends_in_the_same_state(tmp_path: Path, logs: Logs) -> None:
    logs.catalog.append(upserts(simulated(3, 0)[0].catalog()))
    fill(logs, rt=4000, batch=6000)
    snapshots = []
    for round_, (share, size) in enumerate([(0.1, 1000), (0.9, 37), (0.5, 501)]):
        cfg = config(tmp_path / f"run{round_}", catalog_grace_ms=1, batch_min_share=share)
        stream = processor(cfg, logs)
        stream.run_once(size)
        stream.close()  # a restart half way, from the snapshot close writes
        stream = processor(cfg, logs)
        stream.catch_up(size)
        snapshots.append(stream.snapshot_bytes())
        stream.close()
    assert snapshots[0] == snapshots[1] == snapshots[2]


def test_queries_sum_the_lanes(tmp_path: Path, logs: Logs) -> None:
    cfg = config(tmp_path, catalog_grace_ms=1, top_k=1000)  # every item: sums are complete
    logs.catalog.append(upserts(simulated(3, 0)[0].catalog()))
    fill(logs, rt=3000, batch=3000)
    stream = processor(cfg, logs)
    stream.catch_up()
    with stream.reading() as view:
        rt, batch = view.parts
        both = {s.item_id: s.score for s in view.popular(k=50)}
        now = view.now_ms
        alone = [{s.item_id: s.score for s in p.popular(k=1000, now_ms=now)} for p in (rt, batch)]
        counts = view.counts()
        assert counts.events["view"] == sum(p.counts().events["view"] for p in (rt, batch))
    assert both
    for item_id, score in both.items():
        assert score == pytest.approx(sum(part.get(item_id, 0.0) for part in alone))
    stream.close()


def test_a_bulk_import_does_not_hold_up_live_events(tmp_path: Path, logs: Logs) -> None:
    """200k batch events land at once while live events arrive at 1,000/s."""
    cfg = config(tmp_path, catalog_grace_ms=50)
    sim, events = simulated(4, 203_000)
    logs.catalog.append(upserts(sim.catalog()))
    stream = processor(cfg, logs)
    stop = threading.Event()
    worker = threading.Thread(target=stream.run, args=(stop,))
    worker.start()
    try:
        bulk = laned(events[:200_000], "batch")
        for i in range(0, len(bulk), 20_000):
            logs.batch.append(bulk[i : i + 20_000])
        live = events[200_000:]
        for i in range(0, len(live), 20):  # 20 events every 20 ms, stamped on arrival
            now = time.time_ns() // 1_000_000
            chunk = [msgspec.structs.replace(e, received_ms=now) for e in live[i : i + 20]]
            logs.events.append(laned(chunk, "rt"))
            time.sleep(0.02)
        batch_lag = stream.lane_lag()["batch"]  # the bulk still waiting as live events stop
        deadline = time.monotonic() + 10
        while stream.lane_lag()["rt"] and time.monotonic() < deadline:
            time.sleep(0.01)
        rt_lag = stream.lane_lag()["rt"]
    finally:
        stop.set()
        worker.join()
        stream.close()
    summary = stream.freshness_summary("rt")
    assert summary.count == 3000
    assert rt_lag == 0
    assert summary.p99_ms < RT_FRESHNESS_TARGET_MS, (summary, batch_lag)


def test_impressions_are_counted_but_never_judged_as_bots(tmp_path: Path, logs: Logs) -> None:
    # the server logs what it served without a user agent, many to one cookie, fast:
    # all three would flag a visitor's events, none may flag the server's own record
    served = [
        StoredEvent(event_id=f"imp{i}", type=EventType.IMPRESSION, ts_ms=1_000 + i,
                    received_ms=1_000 + i, cookie_id="c1", item_ids=["a", "b"])
        for i in range(100)
    ]  # fmt: skip
    logs.events.append(laned(served, "rt"))
    time.sleep(0.01)
    proc = processor(config(tmp_path), logs)
    try:
        proc.catch_up()
        assert proc.bot_stats()["checked"] == 0
        assert proc.bot_stats()["flagged"] == 0
        with proc.reading() as view:
            assert view.counts().events["impression"] == 100
            assert view.counts().bot_events["impression"] == 0
    finally:
        proc.close(snapshot=False)


def test_a_snapshot_of_the_live_lane_leaves_the_bulk_import_file_alone(
    tmp_path: Path, logs: Logs
) -> None:
    cfg = config(tmp_path, catalog_grace_ms=1)
    logs.catalog.append(upserts(simulated(3, 0)[0].catalog()))
    fill(logs, rt=100, batch=3000)
    stream = processor(cfg, logs)
    stream.catch_up()
    stream.snapshot()
    directory = cfg.data_path / "stream"

    def files() -> dict[str, int]:
        return {p.name: p.stat().st_ino for p in directory.glob("snapshot-*.msgpack")}

    before = files()
    _, more = simulated(4, 50)
    logs.events.append(laned(more, "rt"))
    time.sleep(0.01)
    stream.catch_up()
    stream.snapshot()
    after = files()
    batch = {name for name in after if name.endswith(".batch.msgpack")}
    assert len(batch) == 1
    assert {n: after[n] for n in batch} == {n: before[n] for n in batch}
    assert not {n for n in after if n.endswith(".rt.msgpack")} & before.keys()
    saved, offsets = stream.snapshot_bytes(), stream.offsets()
    stream.close(snapshot=False)
    restarted = processor(cfg, logs)  # restored from the two lane files
    assert restarted.offsets() == offsets
    assert restarted.snapshot_bytes() == saved
    restarted.close()
