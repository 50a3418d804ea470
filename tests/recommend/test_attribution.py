"""Attribution of clicks, carts and purchases to served lists: direct and by visitor,
windows, duplicates, replay and the memory bound."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Sequence
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.config import ExperimentsConfig, VariantConfig
from hotshelf.events import EventType, StoredEvent
from hotshelf.recommend import Recommendation, Recommendations, RecommendRequest, Route
from hotshelf.recommend._attribution import Attribution, _Impression
from hotshelf.recommend._experiments import impression_event
from hotshelf.recommend._online_metrics import ImpressionMetrics, OnlineMetrics, RouteMetrics

T0 = 1_700_000_000_000
MIN = 60_000
CONFIG = ExperimentsConfig(
    variants=[VariantConfig(name="A"), VariantConfig(name="B")],
    click_window_s=30 * 60.0,
    purchase_window_s=2 * 3600.0,
)
_ids = itertools.count()


def shown(
    impression_id: str,
    items: Sequence[str],
    *,
    variant: str = "A",
    at: int = T0,
    cookie: str = "c1",
    user: str | None = None,
    session: str | None = None,
    routes: Sequence[Route] | None = None,
) -> StoredEvent:
    """The impression event the serving side logs for this list."""
    routes = routes or [Route.GENERIC] * len(items)
    answer = Recommendations(
        impression_id=impression_id,
        items=[
            Recommendation(item_id=i, score=1.0, route=r, reason="test")
            for i, r in zip(items, routes, strict=True)
        ],
        routes=list(dict.fromkeys(routes)),
        variant=variant,
        model_version=None,
    )
    request = RecommendRequest(cookie_id=cookie, user_id=user, session_id=session)
    return impression_event(request, answer, now_ms=at)


def act(
    kind: EventType,
    item: str | None,
    *,
    at: int,
    cookie: str | None = "c1",
    user: str | None = None,
    impression: str | None = None,
    basket: list[str] | None = None,
    event_id: str | None = None,
) -> StoredEvent:
    return StoredEvent(
        event_id=event_id or f"e{next(_ids)}",
        type=kind,
        ts_ms=at,
        received_ms=at + 50,
        cookie_id=cookie,
        user_id=user,
        item_id=item,
        item_ids=basket,
        properties=None if impression is None else {"impression_id": impression},
    )


def run(events: Sequence[StoredEvent], config: ExperimentsConfig = CONFIG) -> OnlineMetrics:
    attribution = Attribution(config)
    attribution.apply_many(events)
    return attribution.snapshot()


def arm(metrics: OnlineMetrics, name: str) -> dict[str, Any]:
    [found] = [v for v in metrics.variants if v.variant == name]
    return msgspec.structs.asdict(found)


def route_of(metrics: OnlineMetrics, variant: str, name: str) -> RouteMetrics:
    [found] = [
        r for v in metrics.variants if v.variant == variant for r in v.routes if r.route == name
    ]
    return found


def test_direct_click_credits_the_named_list_its_arm_and_route() -> None:
    routes = [Route.PERSONAL, Route.GENERIC, Route.GENERIC, Route.BROWSING]
    events = [
        shown("imp1", ["i1", "i2", "i3", "i4"], variant="B", routes=routes),
        shown("imp2", ["i2"], variant="A", at=T0 + MIN),
        act(EventType.CLICK, "i2", at=T0 + 2 * MIN, cookie="someone-else", impression="imp1"),
    ]
    metrics = run(events)
    b = arm(metrics, "B")
    assert (b["impressions"], b["items_shown"], b["clicks"], b["clicked_impressions"]) == (
        1,
        4,
        1,
        1,
    )
    assert b["ctr"] == 1.0
    assert arm(metrics, "A")["clicks"] == 0
    assert arm(metrics, "A")["ctr"] == 0.0
    generic = route_of(metrics, "B", "generic")
    assert (generic.impressions, generic.items_shown, generic.clicks, generic.ctr) == (1, 2, 1, 0.5)
    assert route_of(metrics, "B", "personal").clicks == 0
    assert metrics.totals.impressions == 2
    assert metrics.totals.ctr == 0.5
    assert metrics.as_of_ms == T0 + 2 * MIN


def test_by_visitor_within_the_window_only() -> None:
    events = [
        shown("imp1", ["i1", "i2"], user="u1"),
        # the click carries the user id only: the same visitor all the same
        act(EventType.CLICK, "i1", at=T0 + 29 * MIN, cookie=None, user="u1"),
        act(EventType.CLICK, "i2", at=T0 + 31 * MIN, cookie="c1"),  # past the click window
    ]
    metrics = run(events)
    assert arm(metrics, "A")["clicks"] == 1
    assert metrics.unattributed == {"click": 1, "add_to_cart": 0, "purchase": 0}


BY_SESSION = StoredEvent(
    event_id="by-session", type=EventType.CLICK, ts_ms=T0 + 6 * MIN, received_ms=T0 + 6 * MIN,
    session_id="s1", item_id="i9",
)  # fmt: skip


def test_the_most_recent_list_holding_the_item_is_credited() -> None:
    events = [
        shown("old", ["i1", "i9"], variant="A", at=T0, session="s1"),
        shown("new", ["i1", "i2"], variant="B", at=T0 + MIN),
        shown("other-visitor", ["i1", "i9"], variant="A", at=T0 + 2 * MIN, cookie="c2"),
        act(EventType.CLICK, "i1", at=T0 + 3 * MIN),  # in both of c1's lists: "new"
        act(EventType.CLICK, "i9", at=T0 + 4 * MIN, cookie="c3", user=None),  # nobody's
        act(EventType.CLICK, "i9", at=T0 + 5 * MIN, cookie=None),  # no visitor key at all
        BY_SESSION,
    ]
    metrics = run(events)
    assert arm(metrics, "B")["clicks"] == 1
    assert arm(metrics, "A")["clicks"] == 1  # i9, by session, in "old"
    assert arm(metrics, "A")["clicked_impressions"] == 1
    assert metrics.unattributed["click"] == 2


def test_the_most_recent_list_across_the_visitors_keys() -> None:
    events = [
        shown("by-cookie", ["i1"], variant="A", at=T0),
        shown("by-user", ["i1"], variant="B", at=T0 + MIN, cookie="another-device", user="u1"),
        act(EventType.CLICK, "i1", at=T0 + 2 * MIN, cookie="c1", user="u1"),
    ]
    metrics = run(events)
    assert (arm(metrics, "A")["clicks"], arm(metrics, "B")["clicks"]) == (0, 1)


def test_a_named_list_without_the_item_falls_back_to_the_visitor() -> None:
    events = [
        shown("imp1", ["i1"], variant="A"),
        shown("imp2", ["i2"], variant="B", at=T0 + MIN),
        act(EventType.CLICK, "i1", at=T0 + 2 * MIN, impression="imp2"),
        act(EventType.CLICK, "i3", at=T0 + 2 * MIN, impression="no-such-list"),
    ]
    metrics = run(events)
    assert (arm(metrics, "A")["clicks"], arm(metrics, "B")["clicks"]) == (1, 0)
    assert metrics.unattributed["click"] == 1


def test_a_view_counts_as_a_click_only_when_it_names_its_list() -> None:
    events = [
        shown("imp1", ["i1", "i2"]),
        act(EventType.VIEW, "i1", at=T0 + MIN),  # could have come from anywhere
        act(EventType.VIEW, "i2", at=T0 + MIN, impression="imp1"),
        act(EventType.CLICK, "i2", at=T0 + MIN, impression="imp1"),  # the same click, twice
    ]
    metrics = run(events)
    assert arm(metrics, "A")["clicks"] == 1
    assert metrics.unattributed["click"] == 0


def test_carts_and_purchases_use_the_purchase_window() -> None:
    events = [
        shown("imp1", ["i1", "i2"], variant="A"),
        shown("imp2", ["i3"], variant="B", at=T0 + MIN),
        act(EventType.CLICK, "i1", at=T0 + 90 * MIN),  # too late for a click
        act(EventType.ADD_TO_CART, "i1", at=T0 + 90 * MIN),
        act(EventType.PURCHASE, None, at=T0 + 100 * MIN, basket=["i1", "i3", "i7", "i1"]),
        act(EventType.PURCHASE, "i2", at=T0 + 3 * 60 * MIN),  # too late for a purchase
    ]
    metrics = run(events)
    a, b = arm(metrics, "A"), arm(metrics, "B")
    assert (a["clicks"], a["add_to_carts"], a["purchases"]) == (0, 1, 1)
    assert (a["converted_impressions"], a["conversion"]) == (1, 1.0)
    assert (b["purchases"], b["converted_impressions"]) == (1, 1)
    assert metrics.totals.conversion == 1.0
    assert metrics.unattributed == {"click": 1, "add_to_cart": 0, "purchase": 1}
    assert route_of(metrics, "A", "generic").conversion == 0.5  # 1 of 2 items shown


def test_clock_slack_and_event_time_only() -> None:
    long_ago = 1_000_000_000_000  # 2001: the wall clock plays no part
    events = [
        shown("imp1", ["i1", "i2"], at=long_ago),
        act(EventType.CLICK, "i1", at=long_ago - 30_000),  # a client clock half a minute slow
        act(EventType.CLICK, "i2", at=long_ago - 2 * MIN),  # before the list was served
    ]
    metrics = run(events)
    assert arm(metrics, "A")["clicks"] == 1
    assert metrics.as_of_ms == long_ago


def test_duplicates_and_redeliveries_count_once() -> None:
    click = act(EventType.CLICK, "i1", at=T0 + MIN)
    events = [
        shown("imp1", ["i1", "i2"]),
        shown("imp1", ["i1", "i2"]),  # the list logged twice
        click,
        act(EventType.CLICK, "i1", at=T0 + 2 * MIN),  # another click on the same item
        shown("imp2", ["i1"], at=T0 + 3 * MIN),
        click,  # redelivered after a newer list of the item: still the first one's, once
    ]
    metrics = run(events)
    a = arm(metrics, "A")
    assert (a["impressions"], a["clicks"], a["clicked_impressions"]) == (2, 1, 1)
    assert metrics.duplicates == 2
    assert metrics.unattributed["click"] == 0


def test_lists_other_clients_logged_are_not_judged() -> None:
    search_results = StoredEvent(
        event_id="x", type=EventType.IMPRESSION, ts_ms=T0, received_ms=T0,
        cookie_id="c1", item_ids=["i1"], properties={"list": "search"},
    )  # fmt: skip
    metrics = run([search_results, act(EventType.CLICK, "i1", at=T0 + MIN)])
    assert metrics.totals.impressions == 0
    assert metrics.unattributed["click"] == 1


def test_arms_and_routes_not_configured_are_still_listed() -> None:
    event = shown("imp1", ["i1", "i2"], variant="retired")
    assert event.properties is not None
    event.properties["item_routes"] = ["generic", "future-route"]
    metrics = run([event, act(EventType.CLICK, "i2", at=T0 + MIN, impression="imp1")])
    assert [v.variant for v in metrics.variants] == ["A", "B", "retired"]
    assert [r.route for r in metrics.routes] == ["generic", "personal", "browsing", "future-route"]
    assert route_of(metrics, "retired", "future-route").clicks == 1
    assert arm(metrics, "A")["ctr"] is None  # nothing served: no rate
    assert route_of(metrics, "retired", "generic").items_shown == 1


def test_memory_is_bounded_oldest_first() -> None:
    config = msgspec.structs.replace(CONFIG, max_impressions=3)
    attribution = Attribution(config)
    attribution.apply_many(shown(f"imp{i}", [f"i{i}"], at=T0 + i * MIN) for i in range(5))
    assert len(attribution) == 3
    attribution.apply(act(EventType.CLICK, "i0", at=T0 + 6 * MIN, impression="imp0"))
    attribution.apply(act(EventType.CLICK, "i1", at=T0 + 6 * MIN))
    attribution.apply(act(EventType.CLICK, "i2", at=T0 + 6 * MIN))
    metrics = attribution.snapshot()
    assert metrics.totals.impressions == 5
    assert metrics.totals.clicks == 1  # i2: imp0 and imp1 were forgotten
    assert metrics.impressions_remembered == 3


def test_remembered_lists_cost_the_cyclic_gc_nothing() -> None:
    # a server keeps up to max_impressions of them: tracked, they made every full
    # collection (a pause for every request in flight) grow with the count
    attribution = Attribution(CONFIG)
    attribution.apply_many(
        [shown(f"imp{i}", ["i1", "i2"], cookie=f"c{i}", at=T0 + i) for i in range(50)]
    )
    attribution.apply(act(EventType.CLICK, "i1", at=T0 + MIN, cookie="c3"))
    assert attribution.snapshot().totals.clicks == 1
    # type() rather than isinstance(): isinstance reads __class__ on every tracked object,
    # and some (deprecated torch aliases) warn when asked
    assert not [o for o in gc.get_objects() if type(o) is _Impression]
    gc.collect()  # tuples of untracked objects stop being tracked at a collection
    assert not [shown for shown in attribution._visitors.values() if gc.is_tracked(shown)]


def test_lists_past_the_horizon_are_forgotten() -> None:
    attribution = Attribution(CONFIG)
    attribution.apply(shown("imp1", ["i1"]))
    attribution.apply(act(EventType.SEARCH, None, at=T0 + 2 * 60 * MIN + MIN + 1))
    assert len(attribution) == 0  # past the purchase window plus the minute of slack
    attribution.apply(shown("late", ["i1"]))  # served before the horizon: not counted
    attribution.apply(act(EventType.PURCHASE, "i1", at=T0 + 10, impression="imp1"))
    metrics = attribution.snapshot()
    assert (metrics.totals.impressions, metrics.totals.purchases) == (1, 0)


def test_a_visitor_is_searched_back_64_lists_but_a_named_one_is_found() -> None:
    events = [shown("first", ["rare"])]
    events += [shown(f"imp{i}", ["common"], at=T0 + i) for i in range(64)]
    events += [
        act(EventType.CLICK, "rare", at=T0 + MIN),  # by visitor: too far back
        act(EventType.ADD_TO_CART, "rare", at=T0 + MIN, impression="first"),
    ]
    metrics = run(events)
    assert (metrics.totals.clicks, metrics.totals.add_to_carts) == (0, 1)


# -- properties over random event sequences ---------------------------------------------

ITEMS = [f"i{n}" for n in range(6)]
KIND = st.sampled_from([EventType.CLICK, EventType.VIEW, EventType.ADD_TO_CART,
                        EventType.PURCHASE, EventType.SEARCH])  # fmt: skip
STEP = st.one_of(
    st.tuples(
        st.just(EventType.IMPRESSION), st.integers(0, 40 * MIN),
        st.lists(st.sampled_from(ITEMS), min_size=0, max_size=4),
        st.sampled_from(["A", "B"]), st.sampled_from(list(Route)),
        st.sampled_from(["c1", "c2", "c3"]), st.sampled_from([None, "u1", "u2"]),
    ),
    st.tuples(
        KIND, st.integers(0, 40 * MIN), st.lists(st.sampled_from(ITEMS), min_size=1, max_size=3),
        st.integers(-1, 20), st.none(), st.sampled_from(["c1", "c2", "c3"]),
        st.sampled_from([None, "u1", "u2"]),
    ),
)  # fmt: skip


def build(steps: list[tuple[Any, ...]]) -> list[StoredEvent]:
    """Events from drawn steps: time moves on by each step's gap (0 to 40 min), so that
    windows close and lists pass the horizon; actions may name an earlier list."""
    events: list[StoredEvent] = []
    t = T0
    for n, (kind, gap, items, a, b, cookie, user) in enumerate(steps):
        t += gap
        if kind is EventType.IMPRESSION:
            events.append(shown(f"imp{n}", items, variant=a, routes=[b] * len(items), at=t,
                                cookie=cookie, user=user))  # fmt: skip
            continue
        named = f"imp{a}" if a >= 0 else None
        item, basket = (items[0], None) if kind is not EventType.PURCHASE else (None, items)
        # stamped up to half a gap back: actions out of time order with the lists
        events.append(act(kind, item, at=t - gap // 2, cookie=cookie, user=user,
                          impression=named, basket=basket, event_id=f"e{n}"))  # fmt: skip
    return events


SHORT = msgspec.structs.replace(CONFIG, click_window_s=15 * 60.0, purchase_window_s=3600.0)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, max_size=40))
def test_replay_gives_identical_numbers(steps: list[tuple[Any, ...]]) -> None:
    events = build(steps)
    assert msgspec.json.encode(run(events, SHORT)) == msgspec.json.encode(run(events, SHORT))


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=40), data=st.data())
def test_redelivered_events_change_nothing(
    steps: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    events = build(steps)
    noisy = list(events)
    for _ in range(data.draw(st.integers(1, 10))):
        copy = events[data.draw(st.integers(0, len(events) - 1))]
        first = noisy.index(copy)  # the original: every copy lands after it
        noisy.insert(data.draw(st.integers(first + 1, len(noisy))), copy)
    clean, redelivered = run(events, SHORT), run(noisy, SHORT)
    assert redelivered.events == clean.events + len(noisy) - len(events)
    same = {"events": 0, "duplicates": 0}
    assert msgspec.structs.replace(clean, **same) == msgspec.structs.replace(redelivered, **same)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(STEP, max_size=40))
def test_counts_add_up(steps: list[tuple[Any, ...]]) -> None:
    metrics = run(build(steps), SHORT)
    totals = metrics.totals
    fields = ("impressions", "items_shown", "clicks", "add_to_carts", "purchases",
              "clicked_impressions", "converted_impressions")  # fmt: skip
    for name in fields:
        assert getattr(totals, name) == sum(getattr(v, name) for v in metrics.variants)
    for name in ("items_shown", "clicks", "add_to_carts", "purchases"):
        assert getattr(totals, name) == sum(getattr(r, name) for r in metrics.routes)
    assert totals.clicks <= totals.items_shown
    assert totals.purchases <= totals.items_shown
    assert totals.clicked_impressions <= min(totals.impressions, totals.clicks)
    assert totals.converted_impressions <= min(totals.impressions, totals.purchases)
    assert isinstance(totals, ImpressionMetrics)
