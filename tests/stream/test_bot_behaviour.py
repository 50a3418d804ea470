"""The behavioural layer, one check at a time, on small hand-made event sequences."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from hotshelf.config import BotConfig
from hotshelf.events import EventType, StoredEvent
from hotshelf.stream._bot_filter import BotFilter

T0 = 1_700_000_000_000
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
_ids = itertools.count()


def event(
    ts_ms: int,
    type: EventType | str = EventType.VIEW,
    *,
    cookie: str | None = "c1",
    ip: str | None = "ip1",
    session: str | None = None,
    item: str | None = "sku-1",
    ua: str | None = BROWSER,
) -> StoredEvent:
    """A stored event at ``T0 + ts_ms``; ``ip`` stands in for an ip_hash."""
    return StoredEvent(
        event_id=f"e{next(_ids)}",
        type=EventType(type),
        ts_ms=T0 + ts_ms,
        received_ms=T0 + ts_ms,
        cookie_id=cookie,
        session_id=session,
        item_id=item,
        user_agent=ua,
        ip_hash=ip,
    )


def reasons(bots: BotFilter, events: Iterable[StoredEvent]) -> list[tuple[str, ...]]:
    return [bots.check(e).reasons for e in events]


def first_flag(found: list[tuple[str, ...]]) -> int | None:
    return next((i for i, r in enumerate(found) if r), None)


def test_humans_pass() -> None:
    visit = [
        event(0, "search", item=None),
        event(150, "impression", item=None),
        event(4_000, "click"),
        event(4_300, "view"),
        event(9_000, "add_to_cart"),
        event(30_000, "view", item="sku-2"),
        event(90_000, "purchase", item=None),
    ]
    assert reasons(BotFilter(BotConfig()), visit) == [()] * len(visit)


def test_rate_flags_a_fast_visitor() -> None:
    # one event every 200 ms, all on different items: 41 in 10 s is too many
    found = reasons(BotFilter(BotConfig()), [event(200 * i, item=f"s{i}") for i in range(60)])
    assert first_flag(found) == 40
    assert set(found[40:]) == {("rate:cookie",)}


def test_impossible_bursts() -> None:
    found = reasons(BotFilter(BotConfig()), [event(10 * i, item=f"s{i}") for i in range(25)])
    assert first_flag(found) == 19  # 20 events, each within 50 ms of the last
    assert found[19] == ("impossible:cookie",)


def test_click_spam_is_many_events_on_few_items() -> None:
    pairs = [
        [event(500 * i, "click", item=item), event(500 * i + 100, "view", item=item)]
        for i, item in zip(range(20), itertools.cycle(["sku-1", "sku-2"]), strict=False)
    ]
    found = reasons(BotFilter(BotConfig()), itertools.chain.from_iterable(pairs))
    # From the third pair on each click repeats a recent item (the view after it is
    # the next step on that item, not a repeat): the 8th repeat is event 4 + 2 * 7.
    assert first_flag(found) == 18
    assert found[18] == ("spam:cookie",)


def test_click_view_cart_on_one_item_is_no_repeat() -> None:
    steps = [
        event(300 * n + 1_000 * i, kind, item=f"sku-{i}")
        for i in range(12)
        for n, kind in enumerate(["click", "view", "add_to_cart"])
    ]
    assert first_flag(reasons(BotFilter(BotConfig()), steps)) is None
    # viewing the same item again and again is repeating, though
    again = [event(1_000 * i, "view", item="sku-1") for i in range(12)]
    assert first_flag(reasons(BotFilter(BotConfig()), again)) == 8


def test_diverse_browsing_at_the_same_pace_is_not_spam() -> None:
    events = [event(500 * i, "view", item=f"s{i}") for i in range(19)]
    assert first_flag(reasons(BotFilter(BotConfig()), events)) is None


def test_regular_slow_bot() -> None:
    gaps = [30_000, 30_400, 29_700, 30_100, 29_900, 30_300, 30_000]
    times = list(itertools.accumulate(gaps, initial=0))
    found = reasons(BotFilter(BotConfig()), [event(t) for t in times])
    assert first_flag(found) == 5  # five gaps
    assert set(found[5:]) == {("regular:cookie",)}


def test_irregular_or_fast_gaps_are_not_regular() -> None:
    irregular = itertools.accumulate([8_000, 3_100, 25_000, 9_400, 4_000, 12_000], initial=0)
    assert first_flag(reasons(BotFilter(BotConfig()), [event(t) for t in irregular])) is None
    # 1.5 s gaps are as regular as can be, but shorter than regular_min_gap_s
    fast = [event(1_500 * i, item=f"s{i}") for i in range(12)]
    assert first_flag(reasons(BotFilter(BotConfig()), fast)) is None


def test_a_short_gap_starts_the_regularity_count_over() -> None:
    times = [0, 30_000, 60_000, 61_000, 91_000, 121_000, 151_000, 181_000, 211_000]
    found = reasons(BotFilter(BotConfig()), [event(t) for t in times])
    assert first_flag(found) == 8  # five long gaps after the 1 s one


def funnel_views(n: int, start: int = 0) -> list[StoredEvent]:
    # irregular gaps (1.5 s / 4.5 s), distinct items: neither regular, fast nor spam
    return [event(start + 3_000 * i + 1_500 * (i % 2), item=f"s{i}") for i in range(n)]


def test_funnel_many_views_no_cart() -> None:
    found = reasons(BotFilter(BotConfig()), funnel_views(160))
    assert first_flag(found) == 149
    assert found[149] == ("funnel:cookie",)


def test_a_cart_resets_the_funnel() -> None:
    events = funnel_views(100)
    events.append(event(300_500, "add_to_cart", item="s99"))
    events += funnel_views(100, start=301_000)
    assert first_flag(reasons(BotFilter(BotConfig()), events)) is None


def test_old_views_fade_from_the_funnel() -> None:
    config = BotConfig(funnel_window_s=60.0, funnel_min_views=30)
    # 10 views a minute: the count halves every minute, so stays under 2 * 10 < 30
    events = [event(6_000 * i + 1_500 * (i % 2), item=f"s{i}") for i in range(200)]
    assert first_flag(reasons(BotFilter(config), events)) is None
    assert first_flag(reasons(BotFilter(BotConfig(funnel_min_views=30)), events)) == 29


def test_flags_expire_after_a_quiet_period() -> None:
    config = BotConfig(flag_ttl_s=60.0)
    bots = BotFilter(config)
    burst = reasons(bots, [event(10 * i, item=f"s{i}") for i in range(20)])
    assert burst[-1] == ("impossible:cookie",)
    # still flagged within the TTL (no new evidence needed), clean after it
    assert bots.check(event(30_000, item="x")).reasons == ("impossible:cookie",)
    assert bots.check(event(200_000, item="y")).reasons == ()
    records = bots.verdicts()
    assert records == []


def test_an_ip_shared_by_many_cookies_has_higher_thresholds() -> None:
    # 100 events in 10 s on one IP from 20 cookies, 5 each: too many for one cookie,
    # not for an IP (ip_share 5: more than 200)
    events = [event(100 * i, cookie=f"c{i % 20}", item=f"s{i}") for i in range(100)]
    assert first_flag(reasons(BotFilter(BotConfig()), events)) is None
    events = [event(40 * i, cookie=f"c{i % 20}", item=f"s{i}") for i in range(250)]
    found = reasons(BotFilter(BotConfig()), events)
    assert first_flag(found) is not None
    assert {r for r in found if r} == {("rate:ip",)}


def test_an_ip_or_session_with_one_cookie_shares_its_visitor() -> None:
    bots = BotFilter(BotConfig())
    bots.check(event(0, ip="ip1", session="s1"))
    bots.check(event(5_000, ip="ip1", session="s1"))
    cookie = bots._cookies.visitors["c1"]
    assert bots._ips.visitors["ip1"] is cookie
    assert bots._sessions.visitors["s1"] is cookie
    bots.check(event(6_000, cookie="c2", ip="ip1", session="s2"))
    assert bots._ips.visitors["ip1"].kind == "ip"  # a second cookie: its own visitor
    assert bots._ips.visitors["ip1"].events == 3  # c1's two events, and this one
    bots.check(event(7_000, cookie=None, ip="ip9", session="s9"))
    assert bots._ips.visitors["ip9"].kind == "ip"  # no cookie at all
    assert bots._sessions.visitors["s9"].kind == "session"


def test_a_shared_visitor_follows_its_cookie_back_after_eviction() -> None:
    bots = BotFilter(BotConfig(max_tracked=8))
    bots.check(event(0, cookie="c0", ip="ip0"))
    for i in range(1, 10):  # c0 is dropped from the cookies; ip0 still shares its visitor
        bots.check(event(i, cookie=f"c{i}", ip="ip1"))
    assert "c0" not in bots._cookies.visitors
    assert "ip0" in bots._ips.visitors
    bots.check(event(20, cookie="c0", ip="ip0"))
    assert bots._ips.visitors["ip0"] is bots._cookies.visitors["c0"]


def test_an_ip_inherits_the_evidence_of_its_first_cookie() -> None:
    bots = BotFilter(BotConfig())
    items = itertools.cycle(["sku-1", "sku-2"])
    first = [event(300 * i, "view", cookie="c1", item=next(items)) for i in range(8)]
    assert first_flag(reasons(bots, first)) is None  # six repeats: not yet
    # the IP's history so far is c1's, so c2's two views are its 7th and 8th repeats
    assert bots.check(event(2_500, "view", cookie="c2", item="sku-1")).reasons == ()
    assert bots.check(event(2_600, "view", cookie="c2", item="sku-1")).reasons == ("spam:ip",)
    assert bots.check(event(2_700, "view", cookie="c1", item="sku-1")).reasons == ("spam:ip",)
    assert [r.key for r in bots.verdicts()] == ["ip1"]  # c1 itself is not flagged


def test_cookieless_sessions_are_tracked() -> None:
    events = [event(10 * i, cookie=None, ip=f"ip{i}", session="s1") for i in range(20)]
    found = reasons(BotFilter(BotConfig()), events)
    assert found[19] == ("impossible:session",)


def test_a_verdict_names_every_flagged_key() -> None:
    # two spamming cookies behind one IP, each with its session
    events = [
        event(250 * i, "click", cookie=f"c{i % 2}", session=f"s{i % 2}", item=f"sku-{i // 2 % 2}")
        for i in range(60)
    ]
    found = reasons(BotFilter(BotConfig()), events)
    assert ("spam:cookie", "spam:ip") in found
    assert all(r.count("spam:cookie") <= 1 for r in found)


def test_late_events_are_taken_in_log_order() -> None:
    times = [0, 5_000, 4_000, 3_000, 9_000]  # out of order by a few seconds
    found = reasons(BotFilter(BotConfig()), [event(t, item=f"s{t}") for t in times])
    assert found == [()] * 5
