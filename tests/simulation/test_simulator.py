"""The simulated store: determinism, shape of the traffic, hot items, validity."""

from __future__ import annotations

import collections
import itertools
import math

import msgspec
import pytest

from hotshelf.config import EventsConfig
from hotshelf.events import Availability, Event, EventType, Item, check_events
from hotshelf.simulation import HotItem, Label, SimConfig, SimEvent, SpamBurst, StoreSimulator
from tests.simulation.conftest import CONFIG, START_MS, humans


def _json_lines(events: list[SimEvent]) -> list[bytes]:
    return [msgspec.json.encode([s.event, s.label]) for s in events]


def test_same_seed_same_store_and_events(stream: list[SimEvent]) -> None:
    again = StoreSimulator(CONFIG)
    assert _json_lines(list(again.events(duration_s=80.0))) == _json_lines(stream)
    assert again.ground_truth == StoreSimulator(CONFIG).ground_truth
    assert msgspec.json.encode(again.catalog()) == msgspec.json.encode(
        StoreSimulator(CONFIG).catalog()
    )


def test_every_events_call_starts_over(sim: StoreSimulator, stream: list[SimEvent]) -> None:
    assert _json_lines(list(sim.events(500))) == _json_lines(stream[:500])


def test_another_seed_another_run(stream: list[SimEvent]) -> None:
    other = StoreSimulator(msgspec.structs.replace(CONFIG, seed=8))
    assert _json_lines(list(other.events(200))) != _json_lines(stream[:200])


def test_count_and_duration_limits(sim: StoreSimulator) -> None:
    assert len(list(sim.events(123))) == 123
    assert list(sim.events(0)) == []
    short = list(sim.events(duration_s=2.0))
    assert short
    assert all(START_MS <= s.ts_ms < START_MS + 2000 for s in short)
    assert len(list(itertools.islice(sim.events(), 50))) == 50  # endless


def test_events_in_time_order_with_unique_ids(stream: list[SimEvent]) -> None:
    stamps = [s.ts_ms for s in stream]
    assert stamps == sorted(stamps)
    assert stamps[0] >= START_MS
    assert len({s.event.event_id for s in stream}) == len(stream)


def test_rate_is_steady_near_the_configured_events_per_second(stream: list[SimEvent]) -> None:
    per_window = collections.Counter((s.ts_ms - START_MS) // 10_000 for s in stream)
    extra = {2}  # the spam burst sits in 20..25 s
    for window in range(8):
        if window not in extra:
            assert per_window[window] / 10 == pytest.approx(CONFIG.events_per_s, rel=0.12)


def test_events_and_items_validate_against_the_models(
    sim: StoreSimulator, stream: list[SimEvent]
) -> None:
    events = msgspec.json.Decoder(list[Event]).decode(
        msgspec.json.encode([s.event for s in stream])
    )
    assert len(events) == len(stream)
    assert check_events(events, EventsConfig(), now_ms=START_MS + 80_000) == []
    catalog = msgspec.json.Decoder(list[Item]).decode(msgspec.json.encode(sim.catalog()))
    assert len(catalog) == CONFIG.n_items
    assert len({item.item_id for item in catalog}) == CONFIG.n_items


def test_catalog_looks_like_a_store(sim: StoreSimulator) -> None:
    catalog = sim.catalog()
    departments = {item.category[0] for item in catalog}
    assert len(departments) == 8
    assert all(len(item.category) == 3 and item.title and item.description for item in catalog)
    assert all(item.price is not None and item.price > 0 for item in catalog)
    assert all(item.image and item.attributes and "brand" in item.attributes for item in catalog)
    shares = collections.Counter(item.availability for item in catalog)
    assert shares[Availability.IN_STOCK] > 0.8 * len(catalog)
    prices = collections.defaultdict(list)
    for item in catalog:
        prices[item.category[1]].append(item.price or 0.0)
    median = {sub: sorted(p)[len(p) // 2] for sub, p in prices.items()}
    assert median["Computers"] > 5 * median["Snacks"]  # prices follow the category


def test_funnel_narrows(sim: StoreSimulator, stream: list[SimEvent]) -> None:
    kinds = collections.Counter(e.type for e in humans(stream))
    assert kinds[EventType.VIEW] > 5 * kinds[EventType.ADD_TO_CART] > 0
    assert kinds[EventType.ADD_TO_CART] > kinds[EventType.PURCHASE] > 0
    assert kinds[EventType.SEARCH] > 0
    assert kinds[EventType.IMPRESSION] > 0
    sellable = {
        i.item_id
        for i in sim.catalog()
        if i.availability in (Availability.IN_STOCK, Availability.PREORDER)
    }
    carted: dict[str | None, set[str | None]] = collections.defaultdict(set)
    for event in humans(stream):
        if event.type is EventType.ADD_TO_CART:
            assert event.item_id in sellable
            carted[event.session_id].add(event.item_id)
        elif event.type is EventType.PURCHASE:
            assert set(event.item_ids or ()) <= carted[event.session_id]
            assert event.properties
            assert event.properties["revenue"] > 0


def test_sessions_mostly_stay_in_a_category(sim: StoreSimulator, stream: list[SimEvent]) -> None:
    department = {item.item_id: item.category[0] for item in sim.catalog()}
    views: dict[str | None, list[str]] = collections.defaultdict(list)
    for event in humans(stream):
        if event.type is EventType.VIEW and event.item_id:
            views[event.session_id].append(department[event.item_id])
    pairs = [(a, b) for seq in views.values() for a, b in itertools.pairwise(seq)]
    assert sum(a == b for a, b in pairs) / len(pairs) > 0.7


def test_item_popularity_is_zipf_like(stream: list[SimEvent]) -> None:
    counts = collections.Counter(
        e.item_id for e in humans(stream) if e.type is EventType.VIEW and e.item_id
    )
    freq = sorted(counts.values(), reverse=True)
    xs = [math.log(rank) for rank in range(3, 200)]
    ys = [math.log(freq[rank - 1]) for rank in range(3, 200)]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    assert -1.5 < slope < -0.7
    assert sum(freq[:20]) > 0.25 * sum(freq)  # the top 1 % of items draws a big share


def test_visitors_look_real(stream: list[SimEvent]) -> None:
    events = humans(stream)
    devices = collections.Counter(e.device for e in events)
    assert devices["mobile"] > devices["desktop"] > devices["tablet"] > 0
    cities = collections.Counter(e.location for e in events).most_common()
    assert cities[0][1] > 3 * cities[-1][1]  # skewed towards big cities
    assert 0.1 < sum(e.user_id is not None for e in events) / len(events) < 0.8
    assert all(e.cookie_id and e.session_id and e.ip and e.user_agent for e in events)


def _views_of(stream: list[SimEvent], item_id: str, lo_s: float, hi_s: float) -> list[Event]:
    lo, hi = START_MS + lo_s * 1000, START_MS + hi_s * 1000
    return [
        s.event
        for s in stream
        if s.label is Label.HUMAN
        and s.event.type is EventType.VIEW
        and s.event.item_id == item_id
        and lo <= s.ts_ms < hi
    ]


def test_hot_items_surge_at_their_time(sim: StoreSimulator, stream: list[SimEvent]) -> None:
    everywhere, london = sim.ground_truth.hot_items
    assert everywhere.start_ms == START_MS + 40_000
    assert everywhere.location is None
    assert london.start_ms == START_MS + 50_000
    assert london.location == "London, GB"
    assert len(_views_of(stream, everywhere.item_id, 0, 40)) <= 3
    assert len(_views_of(stream, everywhere.item_id, 40, 80)) > 100
    before = _views_of(stream, london.item_id, 0, 50)
    after = _views_of(stream, london.item_id, 50, 80)
    assert len(before) <= 3 < 20 < len(after)
    assert sum(e.location == "London, GB" for e in after) / len(after) > 0.9


def test_a_small_store_still_makes_valid_events() -> None:
    small = StoreSimulator(SimConfig(seed=3, n_items=100, n_visitors=50, start_ms=START_MS))
    run = list(small.events(3000))
    assert check_events([s.event for s in run], EventsConfig(), now_ms=run[-1].ts_ms) == []


def test_hot_item_can_be_named_and_limited(sim: StoreSimulator) -> None:
    item_id = sim.catalog()[5].item_id
    config = msgspec.structs.replace(
        CONFIG, hot_items=(HotItem(at_s=1.0, item_id=item_id, duration_s=2.0, device="mobile"),)
    )
    (truth,) = StoreSimulator(config).ground_truth.hot_items
    assert (truth.item_id, truth.device) == (item_id, "mobile")
    assert (truth.start_ms, truth.end_ms) == (START_MS + 1000, START_MS + 3000)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hot_items": (HotItem(at_s=1, location="Atlantis"),)}, "not a simulated city"),
        ({"hot_items": (HotItem(at_s=1, device="watch"),)}, "mobile/desktop/tablet"),
        ({"hot_items": (HotItem(at_s=1, item_id="nope"),)}, "unknown item_id"),
        ({"spam_bursts": (SpamBurst(at_s=1, item_ids=("nope",)),)}, "unknown item_id"),
    ],
)
def test_bad_plans_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StoreSimulator(msgspec.structs.replace(CONFIG, **change))


@pytest.mark.parametrize(
    "change",
    [{"n_items": 5}, {"events_per_s": 0.0}, {"bot_share": 1.0}, {"n_visitors": 0}],
)
def test_bad_configs_are_refused(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        SimConfig(**change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one item"):
        SpamBurst(at_s=1, n_cookies=0)
    with pytest.raises(ValueError, match="share"):
        HotItem(at_s=1, share=0)


def test_spam_can_target_named_items(sim: StoreSimulator) -> None:
    targets = (sim.catalog()[1].item_id, sim.catalog()[2].item_id)
    config = msgspec.structs.replace(CONFIG, spam_bursts=(SpamBurst(at_s=0.0, item_ids=targets),))
    named = StoreSimulator(config)
    assert named.ground_truth.spam_bursts[0].item_ids == targets
    spam = [s.event.item_id for s in named.events(duration_s=3.0) if s.label is Label.CLICK_SPAM]
    assert set(spam) == set(targets)
