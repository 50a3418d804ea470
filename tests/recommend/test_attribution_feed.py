"""``AttributionFeed`` over real file logs: it catches up, follows, reports its lag,
rebuilds the numbers by replay, merges the batch lane causally and closes; and the
Prometheus series it registers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hotshelf.config import Config, ExperimentsConfig, LogConfig, VariantConfig
from hotshelf.errors import CorruptLogError
from hotshelf.events import EventType, StoredEvent, encode_stored_event
from hotshelf.log import EventLog, open_log
from hotshelf.monitoring import Metrics
from hotshelf.recommend import Recommendation, Recommendations, RecommendRequest, Route
from hotshelf.recommend._attribution import Attribution
from hotshelf.recommend._attribution_feed import AttributionFeed
from hotshelf.recommend._experiments import impression_event

T0 = 1_700_000_000_000
EXPERIMENTS = ExperimentsConfig(variants=[VariantConfig(name="A"), VariantConfig(name="B")])


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(data_dir=str(tmp_path), log=LogConfig(fsync=False))


@pytest.fixture
def events_log(config: Config) -> Iterator[EventLog]:
    with open_log(config, "events") as log:
        yield log


def impression(n: int, variant: str = "A") -> bytes:
    answer = Recommendations(
        impression_id=f"imp{n}",
        items=[
            Recommendation(item_id=f"i{n}", score=1.0, route=Route.PERSONAL, reason="for you"),
            Recommendation(item_id="hit", score=0.5, route=Route.GENERIC, reason="popular"),
        ],
        routes=[Route.PERSONAL, Route.GENERIC],
        variant=variant,
        model_version="cf-1",
    )
    request = RecommendRequest(cookie_id=f"c{n}", user_id=f"u{n}")
    return encode_stored_event(impression_event(request, answer, now_ms=T0 + n))


def action(n: int, kind: EventType = EventType.CLICK, item: str = "hit") -> bytes:
    event = StoredEvent(
        event_id=f"{kind}-{n}-{item}", type=kind, ts_ms=T0 + 1000 + n, received_ms=T0 + 1000 + n,
        cookie_id=f"c{n}", item_id=item,
    )  # fmt: skip
    return encode_stored_event(event)


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the feed did not get there in time"
        time.sleep(0.01)


def test_the_feed_catches_up_follows_and_closes(events_log: EventLog) -> None:
    events_log.append([impression(n, "AB"[n % 2]) for n in range(10)])
    events_log.append([action(n) for n in range(0, 10, 2)])  # the A visitors click
    feed = AttributionFeed(events_log, Attribution(EXPERIMENTS), idle_s=0.01)
    assert feed.lag == 15
    with feed:
        feed.start()
        eventually(lambda: feed.lag == 0)
        metrics = feed.snapshot()
        assert metrics.lag_records == 0
        assert [(v.variant, v.impressions, v.clicks) for v in metrics.variants] == [
            ("A", 5, 5),
            ("B", 5, 0),
        ]
        events_log.append([action(1), action(3, EventType.PURCHASE, "i3")])
        eventually(lambda: feed.snapshot().totals.purchases == 1)
        assert feed.snapshot().totals.clicks == 6
        assert feed.failure is None
        thread = feed._thread
    assert thread is not None
    assert not thread.is_alive()


def test_a_restart_rebuilds_the_numbers_by_replay(config: Config) -> None:
    with open_log(config, "events") as log:
        log.append([impression(n) for n in range(20)] + [action(n) for n in range(5)])
        before = AttributionFeed(log, Attribution(EXPERIMENTS), batch_size=7)
        assert before.catch_up() == 25
        log.append([b"not an event", action(7)])
        assert before.catch_up() == 2
        assert before.skipped == 1
        first = before.snapshot()
    with open_log(config, "events") as log:  # the process restarts: memory is gone
        after = AttributionFeed(log, Attribution(EXPERIMENTS))
        after.catch_up()
        assert after.snapshot() == first
    assert first.totals.clicks == 6


def test_reading_starts_at_the_first_kept_offset(tmp_path: Path) -> None:
    trimmed = LogConfig(fsync=False, retention_hours=0.0, retention_bytes=1,
                        segment_max_bytes=512)  # fmt: skip
    with open_log(Config(data_dir=str(tmp_path), log=trimmed), "events") as log:
        for n in range(30):
            log.append([impression(n)])
        assert log.apply_retention() > 0
        kept = log.end_offset - log.start_offset
        feed = AttributionFeed(log, Attribution(EXPERIMENTS))
        assert feed.lag == kept
        assert feed.catch_up() == kept
        assert feed.snapshot().totals.impressions == kept


def test_batch_imports_are_applied_after_the_lists_before_them(
    config: Config, events_log: EventLog
) -> None:
    with open_log(config, "events.batch") as batch_log:
        events_log.append([impression(1)])
        batch_log.append([action(1)])  # imported after the list was logged
        events_log.append([impression(2)])
        feed = AttributionFeed(events_log, Attribution(EXPERIMENTS), batch_log=batch_log)
        assert feed.lag == 3
        assert feed.catch_up() == 3
        metrics = feed.snapshot()
    assert (metrics.totals.impressions, metrics.totals.clicks) == (2, 1)
    assert metrics.lag_records == 0


def test_the_thread_applies_a_batch_load_in_chunks_apart_too(
    config: Config, events_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch lane's read (up to ``batch_size`` records) is applied ``REPLAY_CHUNK``
    at a time with a sleep between, after the live events before it."""
    import hotshelf.recommend._attribution_feed as feed_module

    with open_log(config, "events.batch") as batch_log:
        events_log.append([impression(1), impression(2)])
        batch_log.append([action(n) for n in range(70)])
        attribution = _Chunks()
        feed = AttributionFeed(events_log, attribution, batch_log=batch_log)
        sleeps: list[float] = []
        lags: list[int] = []

        def sleep(timeout: float | None = None) -> None:
            sleeps.append(timeout)
            lags.append(feed.lag)

        monkeypatch.setattr(feed._stop, "wait", sleep)
        assert feed._pass(paced=True) == 72
        assert attribution.chunks == [2, 32, 32, 6]
        assert sleeps == [feed_module.YIELD_S] * 2
        assert lags == [38, 6]  # what is read is lag until it is applied
        whole = AttributionFeed(events_log, Attribution(EXPERIMENTS), batch_log=batch_log)
        whole.catch_up()
        assert feed.snapshot() == whole.snapshot()


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def test_prometheus_series(events_log: EventLog) -> None:
    metrics = Metrics(process=False)
    events_log.append([impression(1), impression(2, "B"), action(1), action(1, item="i1")])
    events_log.append([action(2, EventType.PURCHASE)])
    feed = AttributionFeed(
        events_log, Attribution(EXPERIMENTS), batch_size=3, registry=metrics.registry
    )
    feed.catch_up()
    events_log.append([impression(3)])
    got = samples(metrics)
    pair = (("route", "generic"), ("variant", "A"))
    assert got[("hotshelf_recommend_impressions_total", pair)] == 1
    assert got[("hotshelf_recommend_items_shown_total", pair)] == 1
    generic_a = (("route", "generic"), ("type", "click"), ("variant", "A"))
    assert got[("hotshelf_recommend_attributed_total", generic_a)] == 1
    personal_a = (("route", "personal"), ("type", "click"), ("variant", "A"))
    assert got[("hotshelf_recommend_attributed_total", personal_a)] == 1
    generic_b = (("route", "generic"), ("type", "purchase"), ("variant", "B"))
    assert got[("hotshelf_recommend_attributed_total", generic_b)] == 1
    assert got[("hotshelf_recommend_variant_impressions_total", (("variant", "B"),))] == 1
    engaged = (("type", "click"), ("variant", "A"))
    assert got[("hotshelf_recommend_engaged_impressions_total", engaged)] == 1
    assert got[("hotshelf_recommend_feed_lag_records", ())] == 1
    assert b"hotshelf_recommend_impressions_total{" in metrics.render()


def test_a_scrape_after_the_log_closed_still_answers(config: Config) -> None:
    metrics = Metrics(process=False)
    log = open_log(config, "events")
    log.append([impression(1)])
    feed = AttributionFeed(log, Attribution(EXPERIMENTS), registry=metrics.registry)
    feed.catch_up()
    log.close()  # the service closes its logs after the feed, but a scrape may come late
    got = samples(metrics)
    assert got[("hotshelf_recommend_variant_impressions_total", (("variant", "A"),))] == 1


def test_a_failing_log_is_reported_and_the_thread_lives_on(config: Config) -> None:
    log = open_log(config, "events")
    log.append([impression(1)])
    log.close()  # reads now fail
    feed = AttributionFeed(log, Attribution(EXPERIMENTS), idle_s=0.01)
    feed.start()
    eventually(lambda: feed.failure is not None)
    assert "LogClosedError" in (feed.failure or "")
    assert feed._thread is not None
    assert feed._thread.is_alive()
    feed.close()
    assert feed._thread is None


def test_the_event_hook_sees_every_event_in_feed_order(
    config: Config, events_log: EventLog
) -> None:
    seen: list[tuple[str, int, str]] = []
    with open_log(config, "events.batch") as batch_log:
        events_log.append([impression(1), b"not an event", impression(2)])
        batch_log.append([action(1)])
        feed = AttributionFeed(
            events_log, Attribution(EXPERIMENTS), batch_log=batch_log,
            on_event=lambda topic, offset, event: seen.append((topic, offset, event.event_id)),
        )  # fmt: skip
        feed.catch_up()
    assert seen == [
        ("events", 0, "imp1"),
        ("events", 2, "imp2"),
        ("events.batch", 0, "click-1-hit"),
    ]


class _Chunks(Attribution):
    """An attribution that notes how many events each ``apply_many`` brought."""

    def __init__(self) -> None:
        super().__init__(EXPERIMENTS)
        self.chunks: list[int] = []

    def apply_many(self, events: list[StoredEvent]) -> None:
        self.chunks.append(len(events))
        super().apply_many(events)


def test_the_thread_applies_the_log_in_small_chunks_apart(
    events_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread lets go of the GIL every ``LIVE_CHUNK`` events while live (a poll's
    worth of impressions) and every ``REPLAY_CHUNK`` further behind (the replay at
    start), so requests need not wait for a whole poll or a 1,000-record read; it
    reads ``PACED_READ`` records at a time. Only ``catch_up`` goes in whole chunks.
    Either way the numbers are the same."""
    import hotshelf.recommend._attribution_feed as feed_module

    monkeypatch.setattr(feed_module, "LIVE_LAG", 50)
    events_log.append([impression(n) for n in range(120)])
    attribution = _Chunks()
    feed = AttributionFeed(events_log, attribution, batch_size=100)
    sleeps: list[float] = []
    applied: list[tuple[int, int]] = []  # what the feed says at each sleep

    def sleep(timeout: float | None = None) -> None:
        sleeps.append(timeout)
        applied.append((feed.applied, feed.lag))

    monkeypatch.setattr(feed._stop, "wait", sleep)
    reads: list[int] = []
    read = events_log.read
    monkeypatch.setattr(events_log, "read", lambda at, n: reads.append(n) or read(at, n))
    assert feed._pass(paced=True) == 120  # 120, 88 and 56 behind: replay; then live
    replay, live = feed_module.REPLAY_CHUNK, feed_module.LIVE_CHUNK
    assert (replay, live, feed_module.PACED_READ) == (32, 8, 64)
    assert attribution.chunks == [32, 32, 32, 8, 8, 8]
    assert sleeps == [feed_module.YIELD_S] * 5  # between chunks, none after the last
    assert reads == [64, 64]  # the second brought the last 56
    # a record read but not applied yet is neither applied nor off the lag (a replica's
    # read-your-writes waits on ``applied``)
    assert applied == [(n, 120 - n) for n in (32, 64, 96, 104, 112)]

    events_log.append([impression(n) for n in range(120, 140)] + [action(n) for n in range(5)])
    attribution.chunks.clear()
    assert feed._pass(paced=True) == 25  # 25 behind: live
    assert attribution.chunks == [live] * 3 + [1]

    events_log.append([impression(n) for n in range(140, 160)])
    attribution.chunks.clear()
    sleeps.clear()
    assert feed.catch_up() == 20  # not the thread's: unpaced
    assert attribution.chunks == [20]
    assert sleeps == []

    whole = AttributionFeed(events_log, Attribution(EXPERIMENTS))
    whole.catch_up()
    assert feed.snapshot() == whole.snapshot()
    assert feed.snapshot().totals.clicks == 5


class _Damaged:
    """``log`` with records ``first``..``last`` unreadable, as a damaged segment reads: a
    read that reaches them raises ``CorruptLogError`` naming them."""

    def __init__(self, log: EventLog, first: int, last: int) -> None:
        self.log, self.first, self.last = log, first, last
        self.start_offset = log.start_offset

    @property
    def end_offset(self) -> int:
        return self.log.end_offset

    def read(self, offset: int, max_records: int = 1000) -> list[Any]:
        if offset <= self.last and offset + max_records > self.first:
            raise CorruptLogError("damaged", path="x", first=self.first, last=self.last)
        return self.log.read(offset, max_records)


@pytest.mark.parametrize("paced", [True, False])
def test_damaged_records_are_skipped_and_the_rest_applied(
    events_log: EventLog, monkeypatch: pytest.MonkeyPatch, paced: bool
) -> None:
    """The records before the damage are applied, the damaged ones skipped, the rest
    applied after them; ``applied`` ends past all of them, with no lag."""
    events_log.append([impression(n) for n in range(100)])
    feed = AttributionFeed(_Damaged(events_log, 40, 49), Attribution(EXPERIMENTS))  # type: ignore[arg-type]
    monkeypatch.setattr(feed._stop, "wait", lambda timeout=None: None)
    feed._pass(paced=paced)
    assert (feed.applied, feed.lag) == (100, 0)
    assert feed.snapshot().totals.impressions == 90
