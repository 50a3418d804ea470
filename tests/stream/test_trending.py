"""Windows, decay and trend scores: the math, the segments, and the simulator's ground truth."""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.config import BotConfig, StreamConfig
from hotshelf.events import EventType, StoredEvent
from hotshelf.simulation import Label, SimConfig, SimEvent, SpamBurst, StoreSimulator
from hotshelf.stream._bot_filter import BotFilter
from hotshelf.stream._sketch import lane
from hotshelf.stream._state import StreamState
from hotshelf.stream._trending import FRACTION_BITS, DecayClock
from tests.stream.simulated import categories, stored

T0 = 1_700_000_000  # seconds
HOME = ("Home", "Kitchen")
TOYS = ("Toys",)


def event(
    kind: EventType,
    item: str,
    t_s: float,
    visitor: str,
    *,
    location: str = "Paris, FR",
    device: str = "mobile",
    ip: str | None = None,
    session: str | None = None,
) -> StoredEvent:
    t_ms = round(t_s * 1000)
    return StoredEvent(
        event_id=f"{visitor}-{item}-{t_ms}",
        type=kind,
        ts_ms=t_ms,
        received_ms=t_ms,
        cookie_id=visitor,
        session_id=session or f"{visitor}-s",
        item_id=item,
        location=location,
        device=device,
        ip_hash=ip or f"ip-{visitor}",
    )


def views(state: StreamState, item: str, t_s: float, visitors: range, **kw: str) -> None:
    for v in visitors:
        state.apply(event(EventType.VIEW, item, t_s, f"v{v}", **kw), HOME, False)


# -- decay -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    tau=st.sampled_from([3600.0, 86400.0, 604800.0]),
    t=st.integers(T0, T0 + 8 * 3600),  # the landmark moves before weights grow past e**8
    ages=st.lists(st.integers(0, 10**8), min_size=2, max_size=5),
)
def test_forward_decay_matches_exponential_decay_and_only_falls(
    tau: float, t: int, ages: list[int]
) -> None:
    clock = DecayClock([tau])
    clock.landmark_s = T0
    weight = clock.weights(t)
    values = [weight * clock.decay(0, (t + age) * 1000) for age in sorted(ages)]
    for age, value in zip(sorted(ages), values, strict=True):
        assert value == pytest.approx(math.exp(-age / tau), rel=1e-4, abs=1e-300)
    assert values == sorted(values, reverse=True)


def test_the_landmark_moves_without_changing_scores() -> None:
    state = StreamState(StreamConfig())
    views(state, "old", T0, range(15))
    later = T0 + 30 * 86400  # far past the shortest window's horizon: counters are rescaled
    views(state, "new", later, range(5))
    (old,) = [s for s in state.popular(window=604800, k=5) if s.item_id == "old"]
    assert old.score == pytest.approx(15 * math.exp(-30 / 7), rel=1e-3)
    assert state._trends.clock.landmark_s == later


# -- units -------------------------------------------------------------------------


def test_popular_counts_distinct_visitors_not_events() -> None:
    state = StreamState(StreamConfig())
    views(state, "shared", T0, range(3))
    for i in range(100):  # one visitor hammering one item
        state.apply(event(EventType.CLICK, "hammered", T0 + i / 10, "bot"), HOME, False)
    scores = {s.item_id: s.score for s in state.popular(window=3600)}
    assert scores["shared"] == pytest.approx(3, rel=1e-2)  # a little decayed by "now"
    assert scores["hammered"] == pytest.approx(2, rel=1e-2)  # one click, weight 2


def test_a_visitor_counts_once_at_its_deepest_step() -> None:
    state = StreamState(StreamConfig())
    for i, kind in enumerate([EventType.VIEW, EventType.ADD_TO_CART, EventType.VIEW]):
        state.apply(event(kind, "a", T0 + i, "v1"), HOME, False)
    buy = event(EventType.PURCHASE, "x", T0 + 5, "v1")
    buy = msgspec.structs.replace(buy, item_id=None, item_ids=["a", "b"])
    state.apply(buy, None, False, category_of={"a": HOME, "b": TOYS}.get)
    scores = {s.item_id: s.score for s in state.popular(window=3600)}
    assert scores["a"] == pytest.approx(10, rel=1e-3)  # the purchase's weight, not 1+5+10
    assert scores["b"] == pytest.approx(10, rel=1e-3)
    assert [s.item_id for s in state.popular(category="Toys")] == ["b"]


def test_an_ip_counts_at_most_the_cap_of_visitors_per_item() -> None:
    state = StreamState(StreamConfig(ip_visitor_cap=3))
    for v in range(10):
        state.apply(event(EventType.VIEW, "a", T0 + v, f"v{v}", ip="office"), HOME, False)
    (score,) = state.popular(window=3600)
    assert score.score == pytest.approx(3, rel=1e-2)


def test_the_spike_guard_clips_a_burst_but_admits_a_lasting_surge() -> None:
    cfg = StreamConfig(spike_floor=5, spike_interval_s=60)
    state = StreamState(cfg)
    start = (T0 // 60 + 1) * 60  # the start of an interval
    views(state, "burst", start, range(50))
    (burst,) = state.popular(window=3600)
    assert burst.score == pytest.approx(5, rel=1e-2)  # the floor
    views(state, "burst", start + 60, range(100, 150))  # it lasts: the next interval admits it
    (burst,) = state.popular(window=3600)
    assert burst.score == pytest.approx(55, rel=2e-2)
    assert state.stats()["spike_clipped"] == 45


# -- trend scores and segments -----------------------------------------------------


def test_trending_is_rising_against_the_own_baseline() -> None:
    state = StreamState(StreamConfig())
    for step in range(3 * 24 * 12):  # steady for three days: a new visitor every 5 minutes
        views(state, "steady", T0 + 300 * step, range(step, step + 1))
    end = T0 + 3 * 86400
    views(state, "rising", end - 300, range(10**6, 10**6 + 15))  # fifteen in five minutes
    views(state, "single", end, range(2 * 10**6, 2 * 10**6 + 1))  # one view is not a trend
    scores = {s.item_id: s.score for s in state.trending(window=3600)}
    assert "single" not in scores
    assert scores["rising"] > 5
    assert scores.get("steady", 0) < 1  # as many as its baseline predicts
    assert state.popular(window=86400)[0].item_id == "steady"


def test_roll_ups_sum_the_segments() -> None:
    state = StreamState(StreamConfig())
    views(state, "a", T0, range(4), location="Paris, FR", device="mobile")
    views(state, "a", T0, range(4, 6), location="Paris, FR", device="Desktop")
    views(state, "b", T0, range(6, 9), location="London, GB", device="mobile")

    def top(location: str = "*", device: str = "*", category: str = "*") -> dict[str, float]:
        found = state.popular(location, device, category, window=3600)
        return {s.item_id: round(s.score, 2) for s in found}

    assert top() == {"a": 6, "b": 3}
    assert top(location="Paris, FR") == {"a": 6}
    assert top(device="mobile") == {"a": 4, "b": 3}
    assert top(location="Paris, FR", device="desktop") == {"a": 2}
    assert top(location="Paris, FR", device="mobile", category="Home") == {"a": 4}
    assert top(category="Home", device="MOBILE") == {"a": 4, "b": 3}
    assert top(category="Toys") == {}


def test_new_locations_past_the_segment_limit_share_other() -> None:
    state = StreamState(StreamConfig(max_segments=6))
    for i in range(20):
        views(state, "a", T0, range(i, i + 1), location=f"City {i}")
    assert len(state._trends.tables) <= 6 + 3  # the limit, plus one overflow segment
    assert sum(s.score for s in state.popular(location="(other)")) > 0
    assert state.popular()[0].score == pytest.approx(20, rel=1e-3)


def test_every_column_is_kept_per_window() -> None:
    state = StreamState(StreamConfig())
    views(state, "a", T0, range(10))
    row = state._trends.tables[("*", "*", "*")].counters["a"]
    assert [lane(row, j) for j in range(4)] == [10 << FRACTION_BITS] * 4
    week = state.popular(window=604800, now_ms=(T0 + 7 * 86400) * 1000)
    assert week[0].score == pytest.approx(10 / math.e, rel=1e-4)


# -- the simulator's ground truth ---------------------------------------------------


def _replay(
    sim_events: list[SimEvent],
    cats: dict[str, tuple[str, ...]],
    checkpoints_s: list[float],
    start_ms: int,
    bots: bool,
) -> Iterator[tuple[float, StreamState]]:
    """Apply the events (with the real bot filter, or none), pausing at each checkpoint."""
    state = StreamState(StreamConfig())
    bot_filter = BotFilter(BotConfig()) if bots else None
    pending = list(checkpoints_s)
    for sim_event, stored_event in zip(sim_events, stored(sim_events), strict=True):
        while pending and sim_event.ts_ms >= start_ms + pending[0] * 1000:
            yield pending.pop(0), state
        item = stored_event.item_id
        is_bot = bot_filter.check(stored_event).is_bot if bot_filter else False
        state.apply(stored_event, cats.get(item) if item else None, is_bot, category_of=cats.get)
    for checkpoint in pending:
        yield checkpoint, state


def test_hot_items_trend_in_their_segment_soon_after_they_turn_hot() -> None:
    sim = StoreSimulator(SimConfig(seed=11, spam_bursts=()))
    truth = sim.ground_truth.hot_items
    start = sim.config.start_ms
    checkpoints = [15.0 * i for i in range(1, 21)]
    first_seen: dict[str, float] = {}
    events = list(sim.events(duration_s=300))
    for at_s, state in _replay(events, categories(sim), checkpoints, start, False):
        for hot in truth:
            top = state.trending(location=hot.location, device=hot.device, k=10)
            if hot.item_id in [s.item_id for s in top]:
                first_seen.setdefault(hot.item_id, at_s)
    for hot in truth:
        hot_at = (hot.start_ms - start) / 1000
        delay = first_seen[hot.item_id] - hot_at
        print(f"hot {hot.item_id} ({hot.location or '*'}): in the top 10 {delay:.0f} s after")
        assert 0 < delay <= 120


@functools.cache
def _spam_run() -> tuple[StoreSimulator, list[SimEvent]]:
    burst = SpamBurst(at_s=120.0, duration_s=30.0, n_items=3, n_cookies=4, multiplier=100.0)
    sim = StoreSimulator(SimConfig(seed=5, spam_bursts=(burst,)))
    return sim, list(sim.events(duration_s=300))


@pytest.mark.parametrize("bots", [True, False], ids=["bot-filter", "no-bot-filter"])
def test_click_spam_does_not_move_the_trending_list(bots: bool) -> None:
    sim, events = _spam_run()
    spam = sim.ground_truth.spam_bursts[0]
    clean = [e for e in events if e.label is not Label.CLICK_SPAM]
    assert len(events) - len(clean) > 500  # 100x the rate of a typical item, on 3 items
    cats, start = categories(sim), sim.config.start_ms
    checkpoints = [135.0, 150.0, 210.0, 300.0]
    lists = {
        name: [
            [s.item_id for s in state.trending(k=100)]
            for _, state in _replay(run, cats, checkpoints, start, bots)
        ]
        for name, run in (("spam", events), ("clean", clean))
    }
    for at_s, spammed, baseline in zip(checkpoints, lists["spam"], lists["clean"], strict=True):
        ranks = [spammed.index(i) + 1 if i in spammed else None for i in spam.item_ids]
        rho, tau = rank_correlations(baseline[:20], spammed)
        print(f"bots={bots} t={at_s:.0f}s spearman={rho:.3f} kendall={tau:.3f} spam ranks={ranks}")
        assert not set(spam.item_ids) & set(spammed[:20]), f"a spammed item in the top 20 at {at_s}"
        assert rho >= 0.9


def test_a_naive_counter_would_list_the_spammed_items() -> None:
    """The control: ranked by raw events during the burst, the spammed items are near the top."""
    sim, events = _spam_run()
    spam = sim.ground_truth.spam_bursts[0]
    during = Counter(
        e.event.item_id
        for e in events
        if spam.start_ms <= e.ts_ms < spam.end_ms and e.event.item_id
    )
    assert set(spam.item_ids) <= {item for item, _ in during.most_common(20)}


def rank_correlations(baseline: list[str], other: list[str]) -> tuple[float, float]:
    """Spearman's rho and Kendall's tau of the baseline's items ranked by ``other``
    (items ``other`` lacks rank after all it has)."""
    position = {item: i for i, item in enumerate(other)}
    order = sorted(baseline, key=lambda i: (position.get(i, len(other)), baseline.index(i)))
    ranks = [order.index(item) for item in baseline]
    n = len(baseline)
    rho = 1 - 6 * sum((i - r) ** 2 for i, r in enumerate(ranks)) / (n * (n * n - 1))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    concordant = sum(1 for i, j in pairs if ranks[i] < ranks[j])
    tau = (2 * concordant - len(pairs)) / len(pairs)
    return rho, tau
