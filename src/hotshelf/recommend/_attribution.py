"""Attribution: which served list a click, a cart or a purchase came from.

``Attribution.apply`` takes events in log order. Impression events that hotshelf served
(``properties["variant"]`` set: see ``impression_event``) are remembered; lists other
clients logged as impressions (search results, category pages) are not ours to judge
and are ignored. Then, for each item of an action event:

* **direct**: its ``properties["impression_id"]`` names a remembered impression that
  holds the item: that one is credited;
* **by visitor**: else the most recently logged remembered impression shown to the same
  ``user_id``, ``cookie_id`` or ``session_id`` that holds the item.

Either way the impression must have been served at most the window before the action,
and at most ``_CLOCK_SLACK_MS`` (a minute) after it: client clocks run behind the
server's, but an action stamped long before its list is a broken clock.

Clicks use ``click_window_s``; carts and purchases (each item of ``item_id`` and
``item_ids``) ``purchase_window_s``. A ``view`` counts as a click only when it names its
impression (a product page opened from the list); a view found by visitor alone could
as well have come from search, so it is not credited.

Each (impression, item, kind) counts once, and an event id once: duplicated or
redelivered events change nothing. Only event time is used (an event's time, but never
later than its arrival), never the wall clock, so replaying a log gives the same numbers.

Memory is bounded by ``max_impressions``: at most that many impressions, and as many
action event ids, are remembered, oldest first out; and none older than the longer
window (plus the slack) before the latest event time, since nothing can be credited to
them any more. A remembered impression costs about 0.5 KiB plus 16 bytes per item
(tracemalloc: 0.9 KiB at 20 items, so 1M impressions take about 0.9 GB), an action id
about 0.15 KiB; item ids are shared between impressions. Past the bound, an impression
evicted early is not credited any more, and a redelivery of a forgotten event may count
again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Final, TypeGuard

import msgspec

from hotshelf.config import ExperimentsConfig
from hotshelf.events import EventType, StoredEvent
from hotshelf.recommend._online_metrics import (
    ADD_TO_CART,
    CLICK,
    KINDS,
    PURCHASE,
    OnlineMetrics,
    Tally,
    build_metrics,
)

__all__ = ["Attribution"]

_CLOCK_SLACK_MS: Final = 60_000  # an action may be stamped this long before its impression
_VISITOR_DEPTH: Final = 64  # impressions per visitor key searched (newest kept)
_MAX_NAMES: Final = 1_000_000  # shared item/route/arm strings; past it sharing starts over
_UNKNOWN_ROUTE: Final = "unknown"  # an item whose route the impression does not say
_CLICKED, _CONVERTED = 1 << CLICK, 1 << PURCHASE


class _Impression(msgspec.Struct, gc=False):
    """A remembered served list. ``credited`` holds a bit per kind per item once credited.

    Not tracked by the cyclic GC (``gc=False``: it holds only strings, ints, tuples of
    strings and a bytearray, so it can never be part of a cycle). A server keeps up to
    ``max_impressions`` of them; tracked, 200,000 made every full collection ~110 ms
    (a stall for every request in flight), untracked ~20 ms.
    """

    id: str
    t: int
    seq: int
    variant: str
    items: tuple[str, ...]
    routes: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    credited: bytearray | None = None
    flags: int = 0  # _CLICKED / _CONVERTED once any item was


def _visitor_keys(event: StoredEvent) -> tuple[str, ...]:
    # one namespace per kind of id: a user id that equals a cookie id is another visitor
    keys = (("u:", event.user_id), ("c:", event.cookie_id), ("s:", event.session_id))
    return tuple(prefix + value for prefix, value in keys if value is not None)


def _position(items: tuple[str, ...], item: str) -> int:
    try:
        return items.index(item)
    except ValueError:
        return -1


def _names_each(routes: object, count: int) -> TypeGuard[list[str]]:
    """Whether ``routes`` is a list of ``count`` strings (``item_routes`` as logged)."""
    return isinstance(routes, list) and len(routes) == count and not {*map(type, routes)} - {str}


def _action_items(event: StoredEvent) -> list[str]:
    """The items an action is about: ``item_id``, then a basket's ``item_ids``, once each."""
    items = [event.item_id] if event.item_id is not None else []
    return list(dict.fromkeys(items + (event.item_ids or [])))


class Attribution:
    """Impressions, and the clicks, carts and purchases credited to them, as counters per
    experiment arm and route. Thread-safe: ``apply`` and ``snapshot`` take one lock."""

    def __init__(self, config: ExperimentsConfig) -> None:
        self.config = config
        self._arm_names = [v.name for v in config.variants]
        self._max = config.max_impressions
        click_ms = round(config.click_window_s * 1000)
        purchase_ms = round(config.purchase_window_s * 1000)
        self._horizon_ms = max(click_ms, purchase_ms) + _CLOCK_SLACK_MS
        # event type -> (kind credited, window in ms, whether found by visitor too)
        self._steps: dict[EventType, tuple[int, int, bool]] = {
            EventType.CLICK: (CLICK, click_ms, True),
            EventType.VIEW: (CLICK, click_ms, False),
            EventType.ADD_TO_CART: (ADD_TO_CART, purchase_ms, True),
            EventType.PURCHASE: (PURCHASE, purchase_ms, True),
        }
        self._lock = threading.Lock()
        self._impressions: dict[str, _Impression] = {}
        self._order: deque[_Impression] = deque()  # remembered impressions, as applied
        # visitor key -> newest last; tuples, which the cyclic GC stops tracking (lists of
        # a server's many visitors stay tracked: every full collection walks them)
        self._visitors: dict[str, tuple[_Impression, ...]] = {}
        self._actions: dict[str, int] = {}  # action event id -> its time (duplicates)
        self._action_order: deque[str] = deque()
        self._names: dict[str, str] = {}
        self._arms: dict[str, Tally] = {}
        self._pairs: dict[tuple[str, str], Tally] = {}
        self._unattributed = [0] * len(KINDS)
        self._now = 0
        self._events = self._duplicates = self._seq = 0

    # -- applying ---------------------------------------------------------------------

    def apply(self, event: StoredEvent) -> None:
        """Apply one event; call in log order."""
        with self._lock:
            self._apply(event)

    def apply_many(self, events: Iterable[StoredEvent]) -> None:
        """Apply events in log order under one lock acquisition."""
        with self._lock:
            for event in events:
                self._apply(event)

    def _apply(self, event: StoredEvent) -> None:
        self._events += 1
        t = min(event.ts_ms, event.received_ms)  # a clock ahead cannot pull "now" forward
        if t > self._now:
            self._now = t
        if event.type is EventType.IMPRESSION:
            self._remember(event, t)
        else:
            step = self._steps.get(event.type)
            if step is not None:
                self._act(event, t, *step)
        self._expire()

    def _shared(self, values: list[str]) -> tuple[str, ...]:
        """One string object per distinct name (item ids, routes, arms), wherever it is
        repeated: impressions hold the same few thousand items over and over."""
        names = self._names
        if len(names) >= _MAX_NAMES:
            names.clear()
        return tuple(map(names.setdefault, values, values))

    def _remember(self, event: StoredEvent, t: int) -> None:
        props = event.properties
        variant = None if props is None else props.get("variant")
        if props is None or not isinstance(variant, str):
            return  # not a list hotshelf served
        if event.event_id in self._impressions:
            self._duplicates += 1
            return
        if t < self._now - self._horizon_ms:
            return  # too old for anything to be credited to it: neither kept nor counted
        self._seq += 1
        items = self._shared(event.item_ids or [])
        [arm] = self._shared([variant])
        imp = _Impression(event.event_id, t, self._seq, arm, items)
        routes = props.get("item_routes")
        if not _names_each(routes, len(items)):
            routes = [_UNKNOWN_ROUTE] * len(items)  # not ours to guess: one route for all
        imp.routes = self._shared(routes)
        imp.keys = _visitor_keys(event)
        self._count_impression(imp)
        self._keep(imp)

    def _keep(self, imp: _Impression) -> None:
        self._impressions[imp.id] = imp
        self._order.append(imp)
        for key in imp.keys:
            shown = self._visitors.get(key, ())
            self._visitors[key] = (*shown[len(shown) + 1 - _VISITOR_DEPTH :], imp)

    def _count_impression(self, imp: _Impression) -> None:
        arm = self._tally(imp.variant)
        arm.impressions += 1
        arm.items += len(imp.items)
        for route in dict.fromkeys(imp.routes):
            pair = self._pair_tally(imp.variant, route)
            pair.impressions += 1
            pair.items += imp.routes.count(route)

    def _tally(self, variant: str) -> Tally:
        tally = self._arms.get(variant)
        if tally is None:
            tally = self._arms[variant] = Tally()
        return tally

    def _pair_tally(self, variant: str, route: str) -> Tally:
        tally = self._pairs.get((variant, route))
        if tally is None:
            tally = self._pairs[(variant, route)] = Tally()
        return tally

    def _act(self, event: StoredEvent, t: int, kind: int, window: int, by_visitor: bool) -> None:
        props = event.properties
        named_id = None if props is None else props.get("impression_id")
        if not by_visitor and not isinstance(named_id, str):
            return  # a view that names no impression is just a view
        if t < self._now - self._horizon_ms - _CLOCK_SLACK_MS:
            return  # nothing it could be credited to is kept: neither counted nor kept
        if event.event_id in self._actions:
            self._duplicates += 1
            return
        self._actions[event.event_id] = t
        self._action_order.append(event.event_id)
        named = self._impressions.get(named_id) if isinstance(named_id, str) else None
        keys = _visitor_keys(event) if by_visitor else ()
        found = False
        for item in _action_items(event):
            imp, pos = self._direct(named, item, t, window)
            if imp is None:
                imp, pos = self._by_visitor(keys, item, t, window)
            if imp is not None:
                found = True
                self._credit(imp, pos, kind)
        if not found:
            self._unattributed[kind] += 1

    def _in_time(self, imp: _Impression, t: int, window: int) -> bool:
        """Whether an action at ``t`` may be credited to ``imp``: served in
        ``[t - window, t + slack]``, and not past the horizon."""
        return max(t - window, self._now - self._horizon_ms) <= imp.t <= t + _CLOCK_SLACK_MS

    def _direct(
        self, imp: _Impression | None, item: str, t: int, window: int
    ) -> tuple[_Impression | None, int]:
        if imp is None or not self._in_time(imp, t, window):
            return None, -1
        pos = _position(imp.items, item)
        return (imp, pos) if pos >= 0 else (None, -1)

    def _by_visitor(
        self, keys: tuple[str, ...], item: str, t: int, window: int
    ) -> tuple[_Impression | None, int]:
        """The most recently logged impression of these visitor keys holding ``item``."""
        best: _Impression | None = None
        best_pos = -1
        for key in keys:
            for imp in reversed(self._visitors.get(key, ())):
                if best is not None and imp.seq <= best.seq:
                    break  # older than what another key found
                if not self._in_time(imp, t, window):
                    continue
                pos = _position(imp.items, item)
                if pos >= 0:
                    best, best_pos = imp, pos
                    break
        return best, best_pos

    def _credit(self, imp: _Impression, pos: int, kind: int) -> None:
        marks = imp.credited
        if marks is None:
            marks = imp.credited = bytearray(len(imp.items))
        bit = 1 << kind
        if marks[pos] & bit:
            return  # this (impression, item, kind) is counted already
        marks[pos] |= bit
        arm = self._tally(imp.variant)
        arm.actions[kind] += 1
        self._pair_tally(imp.variant, imp.routes[pos]).actions[kind] += 1
        if bit & (_CLICKED | _CONVERTED) and not imp.flags & bit:
            imp.flags |= bit
            if bit == _CLICKED:
                arm.clicked += 1
            else:
                arm.converted += 1

    def _expire(self) -> None:
        """Forget past the count bound, and what lies beyond the horizon."""
        cutoff = self._now - self._horizon_ms
        order = self._order
        while order and (len(order) > self._max or order[0].t < cutoff):
            self._forget(order.popleft())
        # an action id outlives every impression it could be credited to (the slack of
        # _in_time), so a redelivery after it is forgotten finds nothing to credit
        cutoff -= _CLOCK_SLACK_MS
        ids, times = self._action_order, self._actions
        while ids and (len(ids) > self._max or times[ids[0]] < cutoff):
            del times[ids.popleft()]

    def _forget(self, imp: _Impression) -> None:
        del self._impressions[imp.id]
        for key in imp.keys:
            shown = self._visitors.get(key)
            # applied in order and trimmed from the front: if it is not first, the
            # visitor's list dropped it already
            if shown and shown[0] is imp:
                if len(shown) > 1:
                    self._visitors[key] = shown[1:]
                else:
                    del self._visitors[key]

    # -- queries ----------------------------------------------------------------------

    def snapshot(self) -> OnlineMetrics:
        """The counters now, per arm, per route and in total (see ``OnlineMetrics``)."""
        with self._lock:
            return build_metrics(
                self._arms,
                self._pairs,
                self._arm_names,
                as_of_ms=self._now if self._events else None,
                events=self._events,
                duplicates=self._duplicates,
                impressions_remembered=len(self._impressions),
                unattributed=dict(zip(KINDS, self._unattributed, strict=True)),
            )

    def __len__(self) -> int:
        """Impressions remembered now."""
        return len(self._impressions)
