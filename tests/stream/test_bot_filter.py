"""BotFilter as a whole: determinism, snapshots, bounded memory, verdicts and stats."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.config import BotConfig
from hotshelf.errors import HotshelfError
from hotshelf.events import EventType, StoredEvent
from hotshelf.stream._answers import BotRecord, Verdict
from hotshelf.stream._bot_behaviour import Visitor, evict_least_recent
from hotshelf.stream._bot_filter import BotFilter
from tests.stream.test_bot_behaviour import BROWSER, event, reasons

# Small thresholds, so that short generated sequences reach every check and evict.
SMALL = BotConfig(
    max_tracked=4,
    flag_ttl_s=5.0,
    max_events_per_s=10,
    ip_share=2,
    rate_window_s=1.0,
    rate_max_events=6,
    spam_min_repeats=3,
    regular_gaps=3,
    regular_max_cv=0.1,
    regular_min_gap_s=1.0,
    funnel_window_s=60.0,
    funnel_min_views=3,
    deny_ip_hashes=["0" * 32],
)

steps = st.tuples(
    st.sampled_from([0, 3, 40, 40, 200, 200, 900, 1000, 1100, 2500, 30_000, 4_000_000, -700]),
    st.sampled_from(list(EventType)),
    st.sampled_from(["c0", "c1", "c2", None]),
    st.sampled_from(["a" * 32, "a" * 32, "b" * 32, "b" * 32, "0" * 32, None]),
    st.sampled_from(["s0", "s1", "s2", None]),
    st.sampled_from(["sku-0", "sku-1", "sku-2", None]),
    st.sampled_from([BROWSER] * 8 + ["curl/8.4.0", None]),
)


Step = tuple[int, EventType, str | None, str | None, str | None, str | None, str | None]


def build(drawn: list[Step]) -> list[StoredEvent]:
    events, ts = [], 0
    for gap, kind, cookie, ip, session, item, ua in drawn:
        ts = max(ts + gap, 0)
        events.append(event(ts, kind, cookie=cookie, ip=ip, session=session, item=item, ua=ua))
    return events


def state_bytes(bots: BotFilter) -> bytes:
    return msgspec.msgpack.encode(bots.to_state())


@settings(max_examples=150, deadline=None)
@given(st.lists(steps, min_size=10, max_size=150))
def test_same_events_same_verdicts_same_bytes(drawn: list[Step]) -> None:
    events = build(drawn)
    copies = [msgspec.msgpack.decode(msgspec.msgpack.encode(e), type=StoredEvent) for e in events]
    one, two = BotFilter(SMALL), BotFilter(SMALL)
    assert reasons(one, events) == reasons(two, copies)
    assert state_bytes(one) == state_bytes(two)
    assert one.stats() == two.stats()
    assert one.verdicts() == two.verdicts()


@settings(max_examples=150, deadline=None)
@given(st.lists(steps, min_size=10, max_size=150), st.data())
def test_snapshot_restore_continues_exactly(drawn: list[Step], data: st.DataObject) -> None:
    events = build(drawn)
    cut = data.draw(st.integers(0, len(events)))
    whole = BotFilter(SMALL)
    expected = reasons(whole, events)

    first = BotFilter(SMALL)
    found = reasons(first, events[:cut])
    snapshot = state_bytes(first)
    restored = BotFilter.from_state(SMALL, msgspec.msgpack.decode(snapshot))
    assert state_bytes(restored) == snapshot
    found += reasons(restored, events[cut:])
    assert found == expected
    assert state_bytes(restored) == state_bytes(whole)
    assert restored.stats() == whole.stats()
    assert restored.verdicts() == whole.verdicts()
    # the snapshot taken earlier did not move on with the filter
    assert state_bytes(first) == snapshot


def _agrees_with_one_that_forgets(drawn: list[Step], forget: Callable[[Visitor], None]) -> None:
    """A filter that ``forget``s a shortcut of every visitor after every event must give
    the same verdicts and end in the same state as one that keeps it."""
    events = build(drawn)
    fast, slow = BotFilter(SMALL), BotFilter(SMALL)
    expected = reasons(fast, events)
    found = []
    for e in events:
        found.append(slow.check(e).reasons)
        for tracker in (slow._cookies, slow._ips, slow._sessions):
            for visitor in tracker.visitors.values():
                forget(visitor)
    assert found == expected
    assert state_bytes(slow) == state_bytes(fast)


def _forget_shared_keys(visitor: Visitor) -> None:
    visitor.via_ip = visitor.via_session = ""


def _forget_agent(visitor: Visitor) -> None:
    visitor.agent = ""


@settings(max_examples=150, deadline=None)
@given(st.lists(steps, min_size=10, max_size=150))
def test_skipping_keys_known_to_share_the_cookie_changes_nothing(drawn: list[Step]) -> None:
    # The check skips the IP and session a cookie's visitor remembers (via_ip,
    # via_session).
    _agrees_with_one_that_forgets(drawn, _forget_shared_keys)


@settings(max_examples=150, deadline=None)
@given(st.lists(steps, min_size=10, max_size=150))
def test_skipping_the_agent_a_cookie_passed_with_changes_nothing(drawn: list[Step]) -> None:
    # The check compares a cookie's user agent with the one its visitor last passed the
    # rules with (agent) instead of looking it up.
    _agrees_with_one_that_forgets(drawn, _forget_agent)


def test_a_cookie_that_takes_a_bots_agent_is_flagged_at_once() -> None:
    bots = BotFilter(BotConfig(max_tracked=8))
    assert not bots.check(event(0, ua=BROWSER)).is_bot
    assert bots._cookies.visitors["c1"].agent == BROWSER
    assert not bots.check(event(60_000, ua=BROWSER)).is_bot
    verdict = bots.check(event(120_000, ua="curl/8.4.0"))
    assert verdict.is_bot
    assert verdict.reasons == ("ua:curl",)
    assert bots._cookies.visitors["c1"].agent == BROWSER  # only an agent that passed


def test_a_key_that_stops_sharing_the_cookie_is_observed_again() -> None:
    bots = BotFilter(BotConfig(max_tracked=8))
    for ts in (0, 5_000):  # ip1 and s1 share c1's visitor, and it knows them
        bots.check(event(ts, ip="ip1", session="s1"))
    cookie = bots._cookies.visitors["c1"]
    assert (cookie.via_ip, cookie.via_session) == ("ip1", "s1")
    bots.check(event(6_000, cookie="c2", ip="ip1", session="s1"))  # ip1, s1: their own
    assert (cookie.via_ip, cookie.via_session) == ("", "")
    bots.check(event(7_000, ip="ip1", session="s1"))
    assert bots._ips.visitors["ip1"].events == 4
    assert bots._sessions.visitors["s1"].events == 4


def test_an_evicted_shared_key_is_forgotten_by_its_cookie() -> None:
    bots = BotFilter(BotConfig(max_tracked=8))
    for ts in (0, 1):
        bots.check(event(ts, cookie="c0", ip="ip0"))
    first = bots._cookies.visitors["c0"]
    assert first.via_ip == "ip0"
    for i in range(1, 9):  # newer visitors on IPs of their own push ip0 out
        bots.check(event(10 + i, cookie=f"c{i}", ip=f"ip{i}"))
    assert "ip0" not in bots._ips.visitors
    assert first.via_ip == ""
    bots.check(event(100, cookie="c0", ip="ip0"))
    assert bots._ips.visitors["ip0"] is bots._cookies.visitors["c0"]


def test_state_is_plain_builtins() -> None:
    bots = BotFilter(SMALL)
    reasons(bots, [event(10 * i, item="sku-1", session="s1") for i in range(30)])
    state = bots.to_state()
    assert msgspec.json.decode(msgspec.json.encode(state)) == msgspec.msgpack.decode(
        msgspec.msgpack.encode(state)
    )


@pytest.mark.parametrize(
    "state", [None, {}, {"version": 99}, {"version": 1, "now_ms": "x"}, [1, 2]]
)
def test_bad_state_is_refused(state: object) -> None:
    with pytest.raises(HotshelfError, match="cannot be restored"):
        BotFilter.from_state(BotConfig(), state)


def test_memory_stays_bounded_under_a_flood_of_visitors() -> None:
    config = BotConfig(max_tracked=100)
    bots = BotFilter(config)
    tables = (bots._cookies.visitors, bots._ips.visitors, bots._sessions.visitors)
    for i in range(5000):
        # distinct everything; every other event without a cookie, so IP and session
        # get visitors of their own; every tenth from a fresh bot user agent
        cookie = f"c{i}" if i % 2 else None
        ua = f"flood-bot/{i}" if i % 10 == 0 else BROWSER
        bots.check(event(i, cookie=cookie, ip=f"{i:032x}", session=f"s{i}", ua=ua))
        assert all(len(table) <= 100 for table in tables)
        assert len(bots._agents) <= 100
    # the least recently seen went first: the newest visitors are all still there
    assert {f"s{i}" for i in range(4950, 5000) if i % 10} <= set(bots._sessions.visitors)


def test_eviction_depends_on_the_state_only() -> None:
    class Seen:
        def __init__(self, last: int) -> None:
            self.last = last

    lasts = {"a": 5, "b": 1, "c": 3, "d": 3, "e": 3, "f": 9}
    forward = {k: Seen(v) for k, v in lasts.items()}
    backward = {k: Seen(v) for k, v in reversed(lasts.items())}
    evict_least_recent(forward, 3)
    evict_least_recent(backward, 3)
    assert set(forward) == set(backward) == {"a", "e", "f"}  # ties at 3 dropped by key


def test_verdicts_list_flagged_visitors_now() -> None:
    bots = BotFilter(BotConfig(flag_ttl_s=60.0))
    reasons(bots, [event(10 * i, cookie="fast", ip="ipf", item=f"s{i}") for i in range(20)])
    bots.check(event(1_000, "view", cookie="calm", ip="ipc"))
    bots.check(event(2_000, ua="curl/8.4.0"))
    records = bots.verdicts()
    at = [event(ms).ts_ms for ms in (0, 190, 2_000, 60_190, 62_000)]
    assert records == [
        BotRecord(
            kind="user_agent", key="curl/8.4.0", reasons=("ua:curl",), first_seen_ms=at[2],
            last_seen_ms=at[2], events=1, flagged_until_ms=at[4],
        ),
        BotRecord(
            kind="cookie", key="fast", reasons=("impossible:cookie",), first_seen_ms=at[0],
            last_seen_ms=at[1], events=20, flagged_until_ms=at[3],
        ),
    ]  # fmt: skip
    assert bots.verdicts(limit=1) == records[:1]
    bots.check(event(100_000, cookie="calm", ip="ipc"))  # event time moves past both flags
    assert bots.verdicts() == []


def test_stats_count_events_and_reasons() -> None:
    bots = BotFilter(BotConfig())
    reasons(bots, [event(10 * i, item=f"s{i}") for i in range(21)])
    assert bots.stats() == {"checked": 21, "flagged": 2, "reason:impossible:cookie": 2}


def test_disabled_filter_passes_everything() -> None:
    bots = BotFilter(BotConfig(enabled=False))
    assert reasons(bots, [event(i, ua="curl/8.4.0") for i in range(30)]) == [()] * 30
    assert bots.stats() == {"checked": 30, "flagged": 0}


def test_verdicts_are_shared_not_allocated_per_event() -> None:
    bots = BotFilter(BotConfig())
    found = [bots.check(event(10 * i, item=f"s{i}")) for i in range(25)]
    assert found[0] is found[1]
    assert found[20] is found[21]
    assert found[21] == Verdict(True, ("impossible:cookie",))
