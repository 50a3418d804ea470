"""The stream collector over a real ``StreamProcessor`` on real file logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hotshelf.config import Config, LogConfig
from hotshelf.events import EventType, StoredEvent, encode_stored_event
from hotshelf.log import FileLog
from hotshelf.monitoring import Metrics
from hotshelf.stream import StreamProcessor, default_bot_filter_factory

T0 = 1_700_000_000_000
N = 10
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: Metrics) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def view(i: int, user_agent: str | None) -> bytes:
    return encode_stored_event(
        StoredEvent(
            event_id=f"e{i}", type=EventType.VIEW, ts_ms=T0, received_ms=T0,
            cookie_id=f"c{i}", item_id="i1", location="Oslo, NO", device="mobile",
            user_agent=user_agent,
        )
    )  # fmt: skip


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[StreamProcessor]:
    """N events received at T0 (half without a user agent: bots), applied 11 s later."""
    cfg = Config(data_dir=str(tmp_path), log=LogConfig(fsync=False))
    # appended at T0 + 10 s, applied at T0 + 11 s; the catalog's clock has moved past
    # the events' stamp, so nothing stamped before them can still appear there
    stamp = lambda: T0 + 10_000  # noqa: E731
    later = lambda: T0 + 10_001  # noqa: E731
    clock = lambda: T0 + 11_000  # noqa: E731
    with (
        FileLog(tmp_path / "events", cfg.log, clock=stamp) as events,
        FileLog(tmp_path / "catalog", cfg.log, clock=later) as catalog,
        FileLog(tmp_path / "batch", cfg.log, clock=stamp) as batch,
    ):
        events.append([view(i, None if i % 2 else "Mozilla/5.0") for i in range(N)])
        factory = default_bot_filter_factory(cfg)
        proc = StreamProcessor(cfg, events, catalog, factory, batch_log=batch, clock=clock)
        proc.catch_up(timeout_s=10)
        assert proc.caught_up()
        try:
            yield proc
        finally:
            proc.close()


def test_freshness_histogram_in_seconds(processor: StreamProcessor) -> None:
    m = Metrics(process=False)
    m.watch_stream(lambda: processor)
    got = samples(m)
    name, rt = "hotshelf_stream_freshness_seconds", (("lane", "rt"),)
    assert got[(f"{name}_count", rt)] == N
    assert got[(f"{name}_sum", rt)] == pytest.approx(11.0 * N)
    assert got[(f"{name}_bucket", (*rt, ("le", "10.0")))] == 0
    assert got[(f"{name}_bucket", (*rt, ("le", "60.0")))] == N
    assert got[(f"{name}_bucket", (*rt, ("le", "+Inf")))] == N
    assert got[(f"{name}_count", (("lane", "batch"),))] == 0  # nothing imported
    p99 = ("hotshelf_stream_freshness_recent_seconds", (*rt, ("quantile", "0.99")))
    assert got[p99] == pytest.approx(11.0)


def test_lag_bots_and_sizes(processor: StreamProcessor) -> None:
    m = Metrics(process=False)
    m.watch_stream(lambda: processor)
    got = samples(m)
    for topic in ("events", "catalog", "events.batch"):
        assert got[("hotshelf_stream_lag_records", (("topic", topic),))] == 0
    assert got[("hotshelf_stream_bot_events_checked_total", ())] == N
    assert got[("hotshelf_stream_bot_events_flagged_total", ())] == N // 2
    by_reason = ("hotshelf_stream_bot_events_flagged_by_reason_total", (("reason", "ua:empty"),))
    assert got[by_reason] == N // 2
    assert got[("hotshelf_stream_table_entries", (("table", "segments"),))] >= 1
    assert got[("hotshelf_stream_records_skipped_total", ())] == 0
    assert ("hotshelf_stream_snapshot_duration_seconds", ()) in got


def test_no_processor_no_stream_series_and_one_collector(processor: StreamProcessor) -> None:
    m = Metrics(process=False)
    m.watch_stream(lambda: None)
    assert not any(name.startswith("hotshelf_stream_") for name, _ in samples(m))
    m.watch_stream(lambda: processor)  # replaces the source; registering twice would clash
    assert ("hotshelf_stream_lag_records", (("topic", "events"),)) in samples(m)
