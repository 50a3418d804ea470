"""``StreamState``: what one event changes, the bounds, the queries, and replay determinism."""

from __future__ import annotations

import gc
import statistics

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.config import StreamConfig, load_config
from hotshelf.errors import ConfigError, ValidationError
from hotshelf.events import EventType, StoredEvent
from hotshelf.stream._admission import _median
from hotshelf.stream._coengagement import CoEngagement
from hotshelf.stream._state import StreamState
from hotshelf.stream._view import StateView

T0 = 1_700_000_000_000  # ms
CATS = {"a": ("Home", "Kitchen"), "b": ("Home", "Bath"), "c": ("Toys",), "d": ("Toys", "Lego")}
encode = msgspec.msgpack.Encoder().encode  # what snapshots use: insertion order


def ev(
    kind: EventType,
    item: str | None,
    t_ms: int,
    *,
    cookie: str = "c1",
    session: str | None = "s1",
    user: str | None = None,
    items: list[str] | None = None,
    location: str | None = "Paris, FR",
    device: str | None = "mobile",
) -> StoredEvent:
    return StoredEvent(
        event_id=f"{cookie}-{t_ms}",
        type=kind,
        ts_ms=t_ms,
        received_ms=t_ms,
        cookie_id=cookie,
        user_id=user,
        session_id=session,
        item_id=item,
        item_ids=items,
        location=location,
        device=device,
        ip_hash=f"ip-{cookie}",
    )


def apply(state: StreamState, event: StoredEvent, bot: bool = False) -> None:
    state.apply(event, CATS.get(event.item_id or ""), bot, category_of=CATS.get)


def test_counts_per_type_segment_and_item() -> None:
    state = StreamState(StreamConfig())
    apply(state, ev(EventType.VIEW, "a", T0))
    apply(state, ev(EventType.VIEW, "a", T0 + 1, location="London, GB"))
    apply(state, ev(EventType.SEARCH, None, T0 + 2))
    apply(state, ev(EventType.PURCHASE, None, T0 + 3, items=["a", "c"]))
    apply(state, ev(EventType.VIEW, "c", T0 + 4, cookie="crawler"), bot=True)
    counts = state.counts(location="Paris, FR")
    assert counts.events == {
        "view": 3, "click": 0, "add_to_cart": 0, "purchase": 1, "impression": 0, "search": 1
    }  # fmt: skip
    assert counts.bot_events["view"] == 1
    # per segment, a purchase counts once per item bought
    segment = counts.segment
    assert (segment["view"], segment["purchase"], segment["search"]) == (1, 2, 1)
    assert state.counts(category="Toys").segment["purchase"] == 1
    assert state.counts().top_items[0].item_id == "a"
    assert state.now_ms == T0 + 4


def test_a_segment_query_sees_categories_that_appear_after_it() -> None:
    state = StreamState(StreamConfig())
    apply(state, ev(EventType.VIEW, "a", T0))
    assert [s.item_id for s in state.popular("Paris, FR", "mobile", None, None, 10)] == ["a"]
    # a category this segment had not seen: a new table in the sum the query keeps
    apply(state, ev(EventType.VIEW, "c", T0 + 1, cookie="c2"))
    apply(state, ev(EventType.VIEW, "c", T0 + 2, cookie="c3"))
    found = [s.item_id for s in state.popular("Paris, FR", "mobile", None, None, 10)]
    assert found == ["c", "a"]


def test_bot_events_are_counted_but_change_nothing_else() -> None:
    state, clean = StreamState(StreamConfig()), StreamState(StreamConfig())
    apply(state, ev(EventType.VIEW, "a", T0, cookie="human"))
    apply(clean, ev(EventType.VIEW, "a", T0, cookie="human"))
    for i in range(200):
        apply(state, ev(EventType.VIEW, "b", T0 + i, cookie=f"bot{i}", session=f"bs{i}"), bot=True)
    assert state.popular(now_ms=T0) == clean.popular(now_ms=T0)  # bots move "now" only
    assert state.related("a") == []
    assert state.history(session_id="bs1").viewed == []
    assert state.counts().bot_events["view"] == 200


def test_history_is_most_recent_first_without_repeats_and_bounded() -> None:
    state = StreamState(StreamConfig(history_length=3))
    for i, item in enumerate(["a", "b", "a", "c", "d"]):
        apply(state, ev(EventType.VIEW, item, T0 + i, user="u1"))
    apply(state, ev(EventType.ADD_TO_CART, "c", T0 + 10, user="u1"))
    apply(state, ev(EventType.PURCHASE, None, T0 + 20, user="u1", items=["c", "b"]))
    history = state.history(session_id="s1")
    assert history.viewed == ["d", "c", "a"]
    assert history.carted == ["c"]
    assert history.bought == ["b", "c"]
    assert state.history(user_id="u1") == history
    assert state.history(user_id="nobody").viewed == []
    with pytest.raises(ValidationError):
        state.history()


def test_sessions_past_the_limit_drop_the_least_recently_active() -> None:
    state = StreamState(StreamConfig(max_sessions=8))
    for i in range(8):
        apply(state, ev(EventType.VIEW, "a", T0 + i, session=f"s{i}"))
    apply(state, ev(EventType.VIEW, "b", T0 + 100, session="s0"))  # s0 is active again
    apply(state, ev(EventType.VIEW, "a", T0 + 200, session="new"))
    assert state.history(session_id="s0").viewed == ["b", "a"]
    assert state.history(session_id="s1").viewed == []  # the least recently active went
    assert state.history(session_id="new").viewed == ["a"]
    assert state.stats()["sessions"] <= 8


def test_related_items_come_from_the_same_sessions() -> None:
    state = StreamState(StreamConfig())
    for s in range(5):
        for i, item in enumerate(["a", "b", "c"]):
            apply(state, ev(EventType.VIEW, item, T0 + 10 * s + i, session=f"s{s}", cookie=f"c{s}"))
    apply(state, ev(EventType.VIEW, "d", T0 + 100, session="other", cookie="x"))
    apply(state, ev(EventType.ADD_TO_CART, "a", T0 + 101, session="s0", cookie="c0"))
    apply(state, ev(EventType.ADD_TO_CART, "d", T0 + 102, session="s0", cookie="c0"))
    related = state.related("a")
    assert [r.item_id for r in related] == ["b", "c"]
    assert related[0].score == 5.0
    assert [r.item_id for r in state.related("d", "carted")] == ["a"]
    assert state.related("a", "bought") == []
    with pytest.raises(ValidationError, match="kind"):
        state.related("a", "liked")


def test_kept_rankings_cost_the_cyclic_gc_nothing() -> None:
    # a serving process keeps up to RANKED_ITEMS per kind: as lists of strings, every
    # full collection visited each string of each of them
    co = CoEngagement(capacity=10, max_items=100)
    co.pair(0, "a", ["b", "c", "d"], 1)
    co.pair(0, "b", ["c"], 2)
    co.pair(0, "c", ["b"], 3)
    assert [item for item, _ in co.related(0, "b", 5)] == ["c", "a"]
    assert [item for item, _ in co.related(0, "c", 5)] == ["b", "a"]
    gc.collect()  # tuples of untracked objects stop being tracked at a collection
    ranked = co.kinds[0].ranked
    assert len(ranked) == 2
    assert not [order for order in ranked.values() if gc.is_tracked(order)]
    assert co.related(0, "b", 1) == [("c", 2)]  # the kept order, cut


def test_queries_reject_unknown_windows_and_bad_k() -> None:
    state = StreamState(StreamConfig())
    with pytest.raises(ValidationError, match="3600"):
        state.trending(window=60)
    with pytest.raises(ValidationError, match="k"):
        state.popular(k=0)
    apply(state, ev(EventType.VIEW, "a", T0))
    assert len(state.popular(k=10**6)) == 1  # k is capped at top_k, not an error


def test_a_state_that_does_not_fit_is_refused() -> None:
    state = StreamState(StreamConfig())
    apply(state, ev(EventType.VIEW, "a", T0))
    saved = msgspec.msgpack.decode(encode(state.to_state()))
    with pytest.raises(ValueError, match="columns"):
        StreamState.from_state(StreamConfig(windows_s=[60.0]), saved)
    with pytest.raises(ValueError, match="version"):
        StreamState.from_state(StreamConfig(), {**saved, "version": 99})


# -- determinism -------------------------------------------------------------------

# Tiny limits, so that every bounded table overflows and prunes within a few events.
TINY = StreamConfig(
    windows_s=[60.0, 600.0],
    trend_baseline_s=3600.0,
    sketch_capacity=1,
    segment_sketch_capacity=1,
    max_segments=6,
    max_visitor_pairs=8,
    ip_visitor_cap=2,
    spike_interval_s=5.0,
    spike_history=4,
    spike_floor=2,
    max_spike_items=3,
    history_length=3,
    max_sessions=3,
    max_users=3,
    co_window=2,
    related_capacity=1,
    max_related_items=3,
)

events_strategy = st.lists(
    st.builds(
        ev,
        kind=st.sampled_from(list(EventType)),
        item=st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", None]),
        # mostly forward in time, sometimes late, once in a while a big jump
        t_ms=st.integers(0, 10**9).map(lambda x: T0 + (x % 40_000 if x % 50 else x)),
        cookie=st.sampled_from(["c1", "c2", "c3", "c4"]),
        session=st.sampled_from(["s1", "s2", "s3", "s4", "s5", None]),
        user=st.sampled_from(["u1", "u2", "u3", "u4", None]),
        items=st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c", "x"]), max_size=3)),
        location=st.sampled_from(["Paris, FR", "London, GB", "Oslo, NO", None]),
        device=st.sampled_from(["mobile", "Desktop", "fridge", None]),
    ),
    max_size=120,
)


@settings(max_examples=120, deadline=None)
@given(events=events_strategy, cuts=st.lists(st.integers(0, 120), max_size=4), bots=st.data())
def test_restoring_anywhere_continues_to_the_same_bytes(
    events: list[StoredEvent], cuts: list[int], bots: st.DataObject
) -> None:
    verdicts = [bots.draw(st.booleans()) if i % 7 == 3 else False for i in range(len(events))]
    clean = StreamState(TINY)
    for event, bot in zip(events, verdicts, strict=True):
        apply(clean, event, bot)
    state = StreamState(TINY)
    for i, (event, bot) in enumerate(zip(events, verdicts, strict=True)):
        if i in cuts:  # a restart: only what the snapshot holds survives
            state = StreamState.from_state(TINY, msgspec.msgpack.decode(encode(state.to_state())))
        apply(state, event, bot)
    assert encode(state.to_state()) == encode(clean.to_state())
    for pattern in ({}, {"location": "Paris, FR"}, {"device": "mobile", "category": "Home"}):
        assert state.trending(**pattern) == clean.trending(**pattern)  # type: ignore[arg-type]
        assert state.popular(**pattern) == clean.popular(**pattern)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("stream.windows_s=[]", "windows_s"),
        ("stream.trend_baseline_s=60", "trend_baseline_s"),
        ("stream.event_weights={like = 1}", "event_weights"),
        ("stream.max_sessions=0", "max_sessions"),
    ],
)
def test_bad_stream_settings_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(overrides=[override], environ={})


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("abcdefgh")), max_size=60),
    st.integers(1, 10),
)
def test_related_ranks_by_count_then_id_and_keeps_k(pairs: list[tuple[str, str]], k: int) -> None:
    # the ranking is two stable sorts (by id, then by count): it must equal one sort
    # on (-count, id), truncated to k
    co = CoEngagement(capacity=100, max_items=100)
    counts: dict[str, dict[str, int]] = {}
    for t, (item, other) in enumerate(pairs):
        co.pair(0, item, [other], t)
        if item != other:
            for one, two in ((item, other), (other, item)):
                counts.setdefault(one, {})[two] = counts.get(one, {}).get(two, 0) + 1
    for item in "abcdefgh":
        expected = sorted(counts.get(item, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        assert co.related(0, item, k) == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcdefghij"), st.lists(st.sampled_from("abcdefghij"), max_size=3)
        ),
        max_size=80,
    ),
    st.integers(1, 6),
)
def test_kept_rankings_follow_every_change_of_the_counters(
    steps: list[tuple[str, list[str]]], k: int
) -> None:
    # queries between pairings keep rankings; pairings, prunes (capacity 2) and drops
    # (4 items at most) must each forget the ones they change
    co = CoEngagement(capacity=2, max_items=4)
    for t, (item, others) in enumerate(steps):
        co.pair(0, item, others, t // 3)
        for queried in "abcdefghij":
            counters = co.kinds[0].partners.get(queried, {})
            fresh = sorted(counters.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
            assert co.related(0, queried, k) == fresh


def test_a_view_over_two_parts_sums_their_related_counts() -> None:
    # lanes (live and batch) and partitions each keep their own co-engagement: an item
    # both know gets the sums, one only one knows gets that one's list, cut to k
    live, batch = StreamState(StreamConfig()), StreamState(StreamConfig())
    for state, sessions, items in ((live, 2, "abc"), (batch, 3, "abd")):
        for s in range(sessions):
            for i, item in enumerate(items):
                apply(state, ev(EventType.VIEW, item, T0 + 10 * s + i, session=f"s{s}"))
    view = StateView([live, batch])
    assert [(r.item_id, r.score) for r in view.related("a")] == [("b", 5.0), ("d", 3.0), ("c", 2.0)]
    assert [(r.item_id, r.score) for r in view.related("d", k=1)] == [("a", 3.0)]
    assert [(r.item_id, r.score) for r in view.related("c")] == [("a", 2.0), ("b", 2.0)]
    assert view.related("z") == []


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=12))
def test_the_spike_guard_median_is_the_statistics_median(values: list[int]) -> None:
    assert _median(values) == statistics.median(values)
    assert _median(tuple(values)) == statistics.median(values)
