"""Bots carry labels beside their events, and each kind shows its signature."""

from __future__ import annotations

import collections
import itertools
import statistics

import msgspec

from hotshelf.events import Event, EventType
from hotshelf.simulation import Label, SimEvent, StoreSimulator
from tests.simulation.conftest import CONFIG, START_MS, humans


def of_kind(stream: list[SimEvent], label: Label) -> list[Event]:
    return [s.event for s in stream if s.label is label]


def by_cookie(events: list[Event]) -> dict[str | None, list[Event]]:
    groups: dict[str | None, list[Event]] = collections.defaultdict(list)
    for event in events:
        groups[event.cookie_id].append(event)
    return groups


def ts_ms(event: Event) -> int:
    assert isinstance(event.timestamp, float)
    return round(event.timestamp * 1000)


def test_every_bot_kind_is_present_and_labelled(
    sim: StoreSimulator, stream: list[SimEvent]
) -> None:
    labels = collections.Counter(s.label for s in stream)
    assert set(labels) == set(Label)
    bots = sum(n for label, n in labels.items() if label is not Label.HUMAN)
    assert 0.03 < bots / len(stream) < 0.12  # bot_share 0.05, plus one spam burst
    truth = sim.ground_truth
    for s in stream:
        expected = truth.bot_cookies.get(s.event.cookie_id or "", Label.HUMAN)
        assert s.label is expected
        assert truth.bot_ips.get(s.event.ip or "", Label.HUMAN) is expected


def test_labels_are_not_inside_the_events(stream: list[SimEvent]) -> None:
    encoded = b"".join(msgspec.json.encode(s.event) for s in stream[:5000])
    for label in ("crawler", "click_spam", "slow_bot", "human"):
        assert label.encode() not in encoded


def test_bots_never_cart_or_buy(stream: list[SimEvent]) -> None:
    kinds = {s.event.type for s in stream if s.label is not Label.HUMAN}
    assert kinds <= {EventType.VIEW, EventType.CLICK}


def test_crawlers_announce_themselves_and_sweep_fast(
    sim: StoreSimulator, stream: list[SimEvent]
) -> None:
    crawls = by_cookie(of_kind(stream, Label.CRAWLER))
    assert len(crawls) == CONFIG.n_crawlers
    agents = set(sim.ground_truth.bot_user_agents)
    assert any("Googlebot" in a for a in agents)
    assert any("bingbot" in a for a in agents)
    for events in crawls.values():
        assert {e.user_agent for e in events} <= agents
        assert all(e.type is EventType.VIEW for e in events)
        assert len({e.item_id for e in events}) == len(events)  # a sweep, no repeats yet
        assert len(events) / 80 > 3  # several pages a second
    assert not any(e.user_agent in agents for e in humans(stream))


def test_click_spam_hammers_few_items_in_its_window(
    sim: StoreSimulator, stream: list[SimEvent]
) -> None:
    (burst,) = sim.ground_truth.spam_bursts
    assert burst.end_ms - burst.start_ms == 5000
    spam = of_kind(stream, Label.CLICK_SPAM)
    assert {e.item_id for e in spam} == set(burst.item_ids)
    assert {e.cookie_id for e in spam} <= set(burst.cookies)
    assert {e.ip for e in spam} <= set(burst.ips)
    assert len(burst.ips) < len(burst.cookies)
    assert all(burst.start_ms <= ts_ms(e) <= burst.end_ms + 200 for e in spam)
    human_views = [e for e in humans(stream) if e.type is EventType.VIEW]
    normal_per_item_s = len(human_views) / CONFIG.n_items / 80
    spam_per_item_s = len(spam) / 2 / len(burst.item_ids) / 5  # click + view per hit
    assert spam_per_item_s > 30 * normal_per_item_s


def test_slow_bots_are_many_regular_and_focused(
    sim: StoreSimulator, stream: list[SimEvent]
) -> None:
    slow = by_cookie(of_kind(stream, Label.SLOW_BOT))
    expected = round(CONFIG.events_per_s * CONFIG.bot_share * 0.4 * CONFIG.slow_bot_period_s)
    assert len(slow) == expected
    assert len({e.ip for events in slow.values() for e in events}) == len(slow)
    targets = set(sim.ground_truth.slow_bot_items)
    assert len(targets) == CONFIG.slow_bot_items
    for events in slow.values():
        assert {e.item_id for e in events} <= targets
        gaps = [ts_ms(b) - ts_ms(a) for a, b in itertools.pairwise(events)]
        if len(gaps) >= 2:
            assert statistics.pstdev(gaps) / statistics.mean(gaps) < 0.03
            assert abs(statistics.mean(gaps) / 1000 - CONFIG.slow_bot_period_s) < 1.0


def test_no_bots_when_asked(sim: StoreSimulator) -> None:
    calm = StoreSimulator(msgspec.structs.replace(CONFIG, bot_share=0.0, spam_bursts=()))
    assert {s.label for s in calm.events(5000)} == {Label.HUMAN}
    assert calm.ground_truth.bot_cookies == {}
    assert calm.ground_truth.slow_bot_items == ()


def test_bots_start_with_the_run(stream: list[SimEvent]) -> None:
    first_crawl = next(s.ts_ms for s in stream if s.label is Label.CRAWLER)
    assert first_crawl - START_MS < 2000
