"""``StreamState``: everything the stream processor derives from the events log.

One ``apply`` per event, in log order, updates:

* event counts per type (bots included, and bots apart);
* per segment (location x device x category), counts per type of item engagements;
* trend units per item and segment over every window (``_trending``), admitted by
  the contribution gate (``_admission``): distinct visitors, per-visitor and per-IP
  caps, spike guard;
* co-engagement within sessions (``_coengagement``) and recent history per user and
  session (``_history``);
* a heavy-hitter table of engagement events per item.

Bot-flagged events are counted and then ignored. The state is a function of the
events applied, in order: integer arithmetic only, bounded tables that evict by event
time with ties broken by key, and no dependence on dict order or the wall clock. So
``to_state`` of a state rebuilt from the log is byte-identical to that of the live one
(``_snapshot`` explains why dict order is safe to keep), and ``from_state`` continues
exactly where it left off.

Memory is bounded by the ``[stream]`` settings. With W = len(windows_s) + 1 columns,
c_r = sketch_capacity, c_s = segment_sketch_capacity, L/D/C the locations, devices and
top-level categories seen (S = segments kept <= max_segments + D*C):

    trend counters   <= (W + 1) * (c_s * S + c_r * (1 + L + D*C))   one int row each
    visitor pairs    <= 2 * max_visitor_pairs                       (visitor, item) + (IP, item)
    spike guard      <= max_spike_items * (spike_history + 3) ints
    history          <= (max_sessions + max_users) * 3 * history_length item ids
    co-engagement    <= 3 * max_related_items * 2 * related_capacity counters
    item counts      <= 2 * sketch_capacity
    (+ the processor's item -> category map: one entry per catalog item)

Not thread-safe: the processor serialises ``apply`` and queries with a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hotshelf.config import StreamConfig
from hotshelf.errors import ValidationError
from hotshelf.events import EventType, StoredEvent
from hotshelf.stream._admission import ContributionGate
from hotshelf.stream._answers import Counts, History, ItemScore
from hotshelf.stream._coengagement import KINDS, CoEngagement
from hotshelf.stream._history import BOUGHT, CARTED, VIEWED, RecentHistory
from hotshelf.stream._sketch import HeavyHitters
from hotshelf.stream._trending import (
    ANY,
    NO_VALUE,
    TrendIndex,
    device_key,
    popular_over,
    trending_over,
)

__all__ = ["StreamState", "ranked"]

STATE_VERSION = 1
EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
_PURCHASE = EVENT_TYPES.index(EventType.PURCHASE)
_LIST_OF: dict[EventType, int] = {
    EventType.VIEW: VIEWED,
    EventType.CLICK: VIEWED,
    EventType.ADD_TO_CART: CARTED,
    EventType.PURCHASE: BOUGHT,
}


CategoryOf = Callable[[str], "tuple[str, ...] | None"]
# trending_over / popular_over: (indexes, pattern, window column, k, now_ms) -> ranked
Ranker = Callable[
    [Sequence[TrendIndex], tuple[str, str, str], int, int, int], list[tuple[str, float]]
]


def _named(counts: list[int]) -> dict[str, int]:
    return {t.value: n for t, n in zip(EVENT_TYPES, counts, strict=True)}


class StreamState:
    """Trending/popular per segment, co-engagement, history and counts, from the log."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self._trends = TrendIndex(config, len(EVENT_TYPES))
        self._gate = ContributionGate(config)
        self._history = RecentHistory(config.history_length, config.max_sessions, config.max_users)
        self._co = CoEngagement(config.related_capacity, config.max_related_items)
        self._items = HeavyHitters(config.sketch_capacity)
        self._events = [0] * len(EVENT_TYPES)
        self._bots = [0] * len(EVENT_TYPES)
        self._now_ms = 0
        self._co_window = config.co_window
        weights = config.event_weights
        # How each event type is applied: (its counter, its weight (-1: no item), its
        # history list); a plain tuple, unpacked once per event.
        self._steps: dict[EventType, tuple[int, int, int]] = {
            t: (i, weights.get(t.value, 0), _LIST_OF[t]) if t in _LIST_OF else (i, -1, 0)
            for i, t in enumerate(EVENT_TYPES)
        }

    @property
    def now_ms(self) -> int:
        """The latest event time applied (epoch ms): the "now" that queries decay to."""
        return self._now_ms

    # -- applying events -------------------------------------------------------

    def apply(
        self,
        event: StoredEvent,
        category: tuple[str, ...] | None,
        verdict_is_bot: bool,
        category_of: CategoryOf | None = None,
    ) -> None:
        """Apply one event. ``category`` is ``event.item_id``'s path; ``category_of`` looks
        up the others' (a purchase's ``item_ids``)."""
        self.apply_fields(
            event.type, event.ts_ms, event.received_ms, event.cookie_id, event.user_id,
            event.session_id, event.item_id, event.item_ids, event.location, event.device,
            event.ip_hash, category, verdict_is_bot, category_of,
        )  # fmt: skip

    def apply_fields(
        self,
        kind: EventType,
        ts_ms: int,
        received_ms: int,
        cookie: str | None,
        user: str | None,
        session: str | None,
        item: str | None,
        item_ids: list[str] | None,
        location: str | None,
        device: str | None,
        ip: str | None,
        category: tuple[str, ...] | None,
        verdict_is_bot: bool,
        category_of: CategoryOf | None,
    ) -> None:
        """``apply`` on an event's fields, which the stream's lane reads once for the bot
        filter and the state (an attribute of a decoded event costs a generic lookup).

        One long function on purpose, like ``VisitorTracker.observe``: it runs for every
        event, and each call saved is a few percent of the budget.
        """
        counter, weight, recent = self._steps[kind]
        # ``x[i] = x[i] + 1``, not ``x[i] += 1``: mypyc compiles the augmented form on a
        # list item to a generic in-place add, this one to a native int add
        events = self._events
        events[counter] = events[counter] + 1
        # Event time, but never later than arrival: a client clock ahead cannot pull
        # "now" (and every decay) forward.
        t_ms = ts_ms
        if t_ms > received_ms:
            t_ms = received_ms
        if t_ms > self._now_ms:
            self._now_ms = t_ms
        if verdict_is_bot:
            bots = self._bots
            bots[counter] = bots[counter] + 1
            return
        trends = self._trends
        if weight < 0:  # impressions and searches: counted, no item engagement
            raw = (location, device, NO_VALUE)
            leaf = trends.resolved.get(raw) or trends.leaf(*raw)
            tally = leaf.counts
            tally[counter] = tally[counter] + 1
            return
        # a tuple, not a Sequence: mypyc loops over a tuple (or a list) by index, over a
        # Sequence through a generic iterator
        items: tuple[str, ...]
        if counter == _PURCHASE and item_ids:
            others = [i for i in item_ids if i != item]
            items = tuple(others) if item is None else (item, *others)
        elif item is not None:
            items = (item,)
        else:
            return
        visitor = user or cookie or session
        t_s = t_ms // 1000
        for each in items:
            path = category if each == item else category_of(each) if category_of else None
            raw = (location, device, path[0] if path else NO_VALUE)
            leaf = trends.resolved.get(raw) or trends.leaf(*raw)
            tally = leaf.counts
            tally[counter] = tally[counter] + 1
            counts = self._items.counters
            counted = counts.get(each)
            if counted is None:
                self._items.add(each, 1)  # a new key: may prune
            else:
                counts[each] = counted + 1
            if visitor is not None:
                units = self._gate.units(visitor, ip, each, weight, t_s)
                if units:
                    trends.add(leaf, each, units, t_s)
            if session is not None:
                earlier = self._history.session_step(session, t_ms, recent, each, self._co_window)
                if earlier:
                    self._co.pair(recent, each, earlier, t_s)
            if user is not None:
                self._history.user_step(user, t_ms, recent, each)

    # -- queries ---------------------------------------------------------------

    @property
    def trends(self) -> TrendIndex:
        """The trend tables (for ``StateView``, which sums several states')."""
        return self._trends

    def pattern(
        self, location: str | None, device: str | None, category: str | None
    ) -> tuple[str, str, str]:
        """A segment pattern from query parameters ("*" or nothing: every value)."""
        loc = location if location else ANY
        dev = ANY if not device or device == ANY else device_key(device)
        return loc, dev, category if category else ANY

    def window_column(self, window_s: float | None) -> int:
        """The trend column of ``window_s`` (None: the shortest); 422 for other windows."""
        if window_s is None:
            return 0
        index = self._trends.window_index(window_s)
        if index is None:
            known = ", ".join(f"{w:g}" for w in self._trends.windows)
            raise ValidationError(f"window must be one of {known} (seconds), not {window_s:g}")
        return index

    def top(self, k: int) -> int:
        """``k`` capped at ``top_k``; 422 below 1."""
        if k < 1:
            raise ValidationError(f"k must be at least 1, not {k}")
        return min(k, self.config.top_k)

    def trending(
        self,
        location: str | None = ANY,
        device: str | None = ANY,
        category: str | None = ANY,
        window: float | None = None,
        k: int = 20,
        *,
        now_ms: int | None = None,
    ) -> list[ItemScore]:
        """Items rising against their own baseline in a segment ("*" = all), best first.

        ``window`` is one of ``windows_s`` (default the shortest); scores decay to
        ``now_ms`` (default the latest event time applied).
        """
        query = (location, device, category, window, k)
        return ranked([self], trending_over, *query, now_ms=now_ms)

    def popular(
        self,
        location: str | None = ANY,
        device: str | None = ANY,
        category: str | None = ANY,
        window: float | None = None,
        k: int = 20,
        *,
        now_ms: int | None = None,
    ) -> list[ItemScore]:
        """Items with the most decayed engagement units in a segment, best first."""
        query = (location, device, category, window, k)
        return ranked([self], popular_over, *query, now_ms=now_ms)

    def related(self, item_id: str, kind: str = "viewed", k: int = 20) -> list[ItemScore]:
        """Items most often ``kind`` ("viewed", "carted", "bought") in the same sessions."""
        return [ItemScore(item, float(n)) for item, n in self.related_counts(item_id, kind, k)]

    def related_counts(
        self, item_id: str, kind: str = "viewed", k: int = 20
    ) -> list[tuple[str, int]]:
        """``related`` as (item, count) pairs, for callers that merge parts' lists."""
        if kind not in KINDS:
            raise ValidationError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        return self._co.related(KINDS.index(kind), item_id, self.top(k))

    def history(self, *, user_id: str | None = None, session_id: str | None = None) -> History:
        """Recent items of one user or one session, most recent first."""
        return self._history.get(user_id=user_id, session_id=session_id)

    def counts(
        self,
        location: str | None = ANY,
        device: str | None = ANY,
        category: str | None = ANY,
        k: int = 20,
    ) -> Counts:
        """Counts per event type, for the segment asked and overall, and the top items."""
        segment = self._trends.counts(self.pattern(location, device, category))
        top = [ItemScore(item, float(n)) for item, n in self._items.top(self.top(k))]
        return Counts(
            events=_named(self._events),
            bot_events=_named(self._bots),
            segment=_named(segment),
            top_items=top,
        )

    def stats(self) -> dict[str, int]:
        """Sizes of the bounded tables and what the gate turned away, for metrics."""
        gate = self._gate
        return {
            "segments": len(self._trends.tables),
            "trend_counters": sum(len(t) for t in self._trends.tables.values()),
            "visitor_pairs": len(gate.pairs),
            "ip_pairs": len(gate.ip_pairs),
            "ip_capped": gate.ip_capped,
            "spike_items": len(gate.guard.items),
            "spike_clipped": gate.guard.clipped,
            "sessions": len(self._history.sessions.active),
            "users": len(self._history.users.active),
            "related_items": len(self._co),
        }

    # -- snapshots -------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The whole state as msgspec builtins (dicts keyed by str, lists, ints)."""
        return {
            "version": STATE_VERSION,
            "now_ms": self._now_ms,
            "events": self._events,
            "bots": self._bots,
            "items": self._items.to_state(),
            "trends": self._trends.to_state(),
            "gate": self._gate.to_state(),
            "history": self._history.to_state(),
            "co": self._co.to_state(),
        }

    @classmethod
    def from_state(cls, config: StreamConfig, state: Any) -> StreamState:
        """The state ``to_state`` saved; ``ValueError`` when it does not fit ``config``."""
        self = cls(config)
        try:
            if state["version"] != STATE_VERSION:
                raise ValueError(f"unknown stream state version {state['version']!r}")
            self._now_ms = int(state["now_ms"])
            self._events = [int(n) for n in state["events"]]
            self._bots = [int(n) for n in state["bots"]]
            self._items = HeavyHitters.from_state(config.sketch_capacity, 1, state["items"])
            self._trends.load_state(state["trends"])
            self._gate.load_state(state["gate"])
            self._history.load_state(state["history"])
            self._co.load_state(state["co"])
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"stream state does not fit: {exc!r}") from None
        return self


def ranked(
    states: Sequence[StreamState],
    ranker: Ranker,
    location: str | None,
    device: str | None,
    category: str | None,
    window: float | None,
    k: int,
    *,
    now_ms: int | None = None,
) -> list[ItemScore]:
    """``ranker`` over the trend tables of ``states`` (the first's settings check the query);
    scores decay to ``now_ms``, by default the latest event time any state applied."""
    first = states[0]
    found = ranker(
        [state.trends for state in states],
        first.pattern(location, device, category),
        first.window_column(window),
        first.top(k),
        max(state.now_ms for state in states) if now_ms is None else now_ms,
    )
    return [ItemScore(item, score) for item, score in found]
