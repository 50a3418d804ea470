"""The behavioural layer of bot filtering: evidence gathered per visitor.

One ``VisitorTracker`` per key kind (cookie, ip_hash, session) keeps a few integers
per visitor, all in event time (``ts_ms``), and flags the visitor when one of these
checks passes its threshold; the reason names the check and the key kind:

* ``impossible:<kind>``: ``max_events_per_s`` events in a row, each less than
  ``1 / max_events_per_s`` seconds after the one before;
* ``rate:<kind>``: more than ``rate_max_events`` events in a sliding window of
  ``rate_window_s``;
* ``spam:<kind>``: click spam, many events on very few items: ``spam_min_repeats``
  repeats in the window, a repeat being an item event (view, click, cart) on one of
  the visitor's last three items, other than the next step on the last one (click,
  then view, then cart: what people do);
* ``regular:<kind>``: the last ``regular_gaps`` gaps between events are each at least
  ``regular_min_gap_s`` and their coefficient of variation is at most
  ``regular_max_cv`` (slow distributed bots keep a near-fixed period; people don't);
* ``funnel:<kind>``: ``funnel_min_views`` views and no cart or purchase, the view
  count halving every ``funnel_window_s`` (so old browsing fades).

An IP's thresholds for impossible, rate and funnel are ``ip_share`` times a cookie's:
people share addresses behind NAT. A flag holds until ``flag_ttl_s`` of event time
after the evidence was last seen.

An IP or session seen with one cookie only is not tracked on its own: its entry *is*
that cookie's ``Visitor`` (its events so far are the cookie's, so is its evidence).
At its second cookie, or an event without one, it gets a ``Visitor`` of its own that
starts from a copy of the first cookie's evidence. That keeps the common case (one
person, one address, one session) to one visitor, and the IP and session to a string
comparison each: the cookie's visitor remembers one of each known to share it
(``via_ip``, ``via_session``), so the check need not look them up.

The sliding window is two fixed buckets aligned to ``ts // width``, the previous one
weighted by how much of it the window still covers. Everything is integer arithmetic
on the events seen, in order (the one float, the CV bound, is a fixed product), so
verdicts never depend on the clock, on dict order or on summation order.

**Memory bound**: each tracker holds at most ``max_tracked`` entries. Admitting one
more to a full tracker first drops the least recently seen eighth (by last ``ts_ms``,
ties by key: the choice depends only on the state). An entry is at most one
``Visitor`` (an IP or session entry may keep its cookie's visitor alive after the
cookie tracker dropped it), so the three trackers hold at most ``3 * max_tracked``
visitors. One costs about 0.85 KB with its key, three item ids and the ring (measured
on CPython 3.11, ``regular_gaps`` 5), a shared entry about 0.1 KB: at most
``3 * max_tracked * 0.85 KB`` (255 MB at the default 100,000), about 1 KB per cookie
when people keep one cookie per address and session. A visitor stays tracked while
fewer than ``max_tracked`` others are seen, so size it to the visitors active within
``regular_gaps`` periods of the slowest bot worth catching.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any, Literal

from hotshelf.config import BotConfig

__all__ = [
    "CONVERT",
    "ITEM",
    "VIEW",
    "TrackedKind",
    "Visitor",
    "VisitorTracker",
    "evict_least_recent",
]

TrackedKind = Literal["cookie", "ip", "session"]

# Event classes, as bits (one event type can be several).
ITEM = 1  # an event about one item: diversity and click spam
VIEW = 2  # a product view: the funnel counts these
CONVERT = 4  # a cart or purchase: the funnel resets

_NEVER = -(1 << 62)


def evict_least_recent(table: dict[str, Any], keep: int) -> list[tuple[str, Any]]:
    """Drop entries (objects with ``last``) down to ``keep``, least recent first, ties by key;
    returns the ``(key, entry)`` pairs dropped."""
    drop = len(table) - keep
    if drop <= 0:
        return []
    cutoff = sorted(entry.last for entry in table.values())[drop - 1]
    older = [key for key, entry in table.items() if entry.last < cutoff]
    ties = sorted(key for key, entry in table.items() if entry.last == cutoff)
    return [(key, table.pop(key)) for key in older + ties[: drop - len(older)]]


# A visitor's evidence, in export order (``gaps`` and ``reasons`` become lists).
FIELDS = (
    "events", "first", "last",
    "ngaps", "s1", "s2", "gaps",
    "burst",
    "wend", "w_cur", "w_prev", "r_cur", "r_prev",
    "item0", "item1", "item2", "step",
    "fend", "views",
    "until", "reason", "reasons",
)  # fmt: skip
_GAPS_AT = FIELDS.index("gaps")
_fields_of = operator.attrgetter(*FIELDS)  # one C call per row at snapshot time
# What an IP or session takes over from its first cookie: all but the ring and the flag.
_EVIDENCE = tuple(f for f in FIELDS if f not in {"gaps", "until", "reason", "reasons"})


class Visitor:
    """What one tracker knows about one visitor (all integers are event-time ms or counts)."""

    __slots__ = ("agent", "key", "kind", "via_ip", "via_session", *FIELDS)

    def __init__(self, kind: TrackedKind, key: str, ts: int, n_gaps: int) -> None:
        self.kind, self.key = kind, key  # whose visitor this is
        # A cookie's visitor: an IP and a session known to share it (their tracker entry
        # is this visitor), so ``BotFilter.check`` can skip looking them up. Not state:
        # set by the check, cleared by the IP or session tracker when the key moves on.
        self.via_ip = self.via_session = ""
        # A cookie's visitor: the last user agent its events carried that the rules let
        # through, so the check can compare the next one with it instead of hashing it
        # (user agents are long) to look it up. Not state either: set by the check.
        self.agent = ""
        self.events = 0
        self.first = self.last = ts
        # the last n_gaps gaps between events, all long (a ring), their sum and sum of squares
        self.ngaps = self.s1 = self.s2 = 0
        self.gaps = [0] * n_gaps
        self.burst = 0  # events in a row, each less than 1 / max_events_per_s after the last
        # rate window buckets (the current one ends at wend): events, and item events
        # on a recent item (repeats)
        self.wend = self.w_cur = self.w_prev = self.r_cur = self.r_prev = 0
        self.item0: str | None = None  # the last three distinct items touched, newest first
        self.item1: str | None = None
        self.item2: str | None = None
        self.step = 0  # the event bits of the last item event (click < view < cart)
        # views since the last cart or purchase, halved when a funnel bucket ends at fend
        self.fend = self.views = 0
        self.until = _NEVER
        self.reason = ""
        self.reasons: tuple[str, ...] = ()

    def row(self) -> list[Any]:
        """The evidence as a list of builtins, in ``FIELDS`` order (a copy)."""
        row = list(_fields_of(self))
        row[_GAPS_AT] = list(self.gaps)
        row[-1] = list(self.reasons)
        return row

    @classmethod
    def from_row(cls, kind: TrackedKind, key: str, row: list[Any], n_gaps: int) -> Visitor:
        if len(row) != len(FIELDS):
            raise ValueError(f"bad {kind} row for {key!r}")
        v = cls(kind, key, 0, n_gaps)
        row = list(row)  # the ring a list, the reasons a tuple, as typed (set as such)
        row[_GAPS_AT], row[-1] = list(row[_GAPS_AT]), tuple(row[-1])
        for name, value in zip(FIELDS, row, strict=True):
            setattr(v, name, value)
        if len(v.gaps) != n_gaps:  # regular_gaps changed: start the ring over
            v.gaps, v.ngaps, v.s1, v.s2 = [0] * n_gaps, 0, 0, 0
        return v


class VisitorTracker:
    """Behavioural evidence for one key kind; ``observe`` is called once per event.

    ``visitors`` maps a key to its ``Visitor``; in the IP and session trackers that
    may be the visitor of the one cookie the key has been seen with (``kind`` tells).
    """

    def __init__(self, kind: TrackedKind, config: BotConfig) -> None:
        self.kind: TrackedKind = kind
        self.visitors: dict[str, Visitor] = {}
        # the visitor of the last observed event (a placeholder until the first)
        self.current = Visitor(kind, "", 0, 0)
        self._max = config.max_tracked
        self._keep = config.max_tracked - max(1, config.max_tracked // 8)
        share = config.ip_share if kind == "ip" else 1
        self._width = max(1, round(config.rate_window_s * 1000))
        self._per_s = config.max_events_per_s * share
        self._fast_gap = 1000 // self._per_s
        self._rate_max = config.rate_max_events * share
        self._spam_min = config.spam_min_repeats
        self._n_gaps = config.regular_gaps
        self._min_gap = max(1, round(config.regular_min_gap_s * 1000))
        self._cv2 = config.regular_max_cv**2
        self._fwidth = max(1, round(config.funnel_window_s * 1000))
        self._funnel_min = config.funnel_min_views * share
        self._ttl = round(config.flag_ttl_s * 1000)
        self._impossible, self._rate = f"impossible:{kind}", f"rate:{kind}"
        self._spam, self._regular = f"spam:{kind}", f"regular:{kind}"
        self._funnel = f"funnel:{kind}"

    def observe(
        self,
        key: str,
        ts: int,
        item: str | None,
        bits: int,
        cookie: str | None = None,
        cookie_visitor: Visitor | None = None,
    ) -> str:
        """Take one event of visitor ``key``; the reason it is flagged now, or ``""``.

        ``cookie`` and ``cookie_visitor`` (for IP and session keys) are the event's
        cookie and its visitor: a key seen with that one cookie only shares its visitor.

        One long function on purpose: it runs for every event on the stream's hot
        path, where each extra call would cost a tenth of the budget. Cheap count
        tests guard the exact window sums, which are rarely needed.
        """
        v = self.visitors.get(key)
        if v is None or v.kind != self.kind:
            v = self._own(key, v, ts, cookie, cookie_visitor)
            if v is None:  # shares the cookie's visitor, observed already
                return ""
        self.current = v
        v.events += 1
        reason = ""
        gap = ts - v.last
        if gap >= self._min_gap:  # a long gap: into the ring, test regularity
            v.last = ts
            n = v.ngaps
            ring, at = v.gaps, n % self._n_gaps
            old = ring[at] if n >= self._n_gaps else 0
            ring[at] = gap
            v.s1 += gap - old
            v.s2 += gap * gap - old * old
            v.ngaps = n = n + 1
            if n >= self._n_gaps:
                s1 = v.s1
                if self._n_gaps * v.s2 - s1 * s1 <= self._cv2 * s1 * s1:
                    reason = self._regular
            if v.burst:
                v.burst = 0
        else:  # a short gap (late events count as 0): not slow and regular, start over
            if gap > 0:
                v.last = ts
            if v.ngaps:
                v.ngaps = v.s1 = v.s2 = 0
            if gap < self._fast_gap:
                v.burst += 1
                if v.burst >= self._per_s:
                    reason = self._impossible
            elif v.burst:
                v.burst = 0
        w = self._width
        if ts >= v.wend:  # the window moves on by one bucket, or more
            if ts < v.wend + w:
                v.w_prev, v.r_prev = v.w_cur, v.r_cur
            else:
                v.w_prev = v.r_prev = 0
            v.w_cur = v.r_cur = 0
            v.wend = ts - ts % w + w
        v.w_cur += 1  # late events count in the current bucket
        if v.w_cur + v.w_prev > self._rate_max and not reason:
            overlap = min(v.wend - ts, w)  # of the previous bucket, still in the window
            if v.w_cur * w + v.w_prev * overlap > self._rate_max * w:
                reason = self._rate
        if bits & ITEM and item is not None:
            # a repeat: an event on one of the last three items touched, except the
            # next step on the last one (click -> view -> cart), which people take
            if item == v.item0:
                repeat = bits <= v.step
            else:
                repeat = item == v.item1 or item == v.item2
                if item != v.item1:
                    v.item2 = v.item1
                # two statements: mypyc (setup.py) mistypes the tuple form's None
                v.item1 = v.item0
                v.item0 = item
            v.step = bits
            if repeat:
                v.r_cur += 1
                if v.r_cur + v.r_prev >= self._spam_min and not reason:
                    overlap = min(v.wend - ts, w)
                    if v.r_cur * w + v.r_prev * overlap >= self._spam_min * w:
                        reason = self._spam
        if bits & VIEW:  # funnel: views since the last cart, halved per funnel window
            if ts >= v.fend:
                fw = self._fwidth
                v.views >>= min((ts - v.fend) // fw + 1, 62)
                v.fend = ts - ts % fw + fw
            v.views += 1
            if v.views >= self._funnel_min and not reason:
                reason = self._funnel
        elif bits & CONVERT:
            v.views = 0
        if reason:
            v.until = ts + self._ttl
            v.reason = reason
            if reason not in v.reasons:
                v.reasons = (*v.reasons, reason)
            return reason
        return v.reason if ts <= v.until else ""

    def _own(
        self,
        key: str,
        entry: Visitor | None,
        ts: int,
        cookie: str | None,
        cookie_visitor: Visitor | None,
    ) -> Visitor | None:
        """The key's own visitor, new or inherited; None while it shares its cookie's."""
        if entry is None:
            if cookie_visitor is not None:
                self._admit(key, cookie_visitor)
                return None
            return self._admit(key, Visitor(self.kind, key, ts, self._n_gaps))
        if entry is cookie_visitor:
            return None
        self._unshare(key, entry)
        if cookie_visitor is not None and entry.key == cookie:
            # the cookie tracker dropped and re-admitted this cookie: follow it
            self.visitors[key] = cookie_visitor
            return None
        # a second cookie (or none): from now on the key is tracked on its own,
        # starting from the evidence (not the flag) of the one cookie it had so far
        v = self.visitors[key] = Visitor(self.kind, key, ts, self._n_gaps)
        for name in _EVIDENCE:
            setattr(v, name, getattr(entry, name))
        if len(entry.gaps) == self._n_gaps:
            v.gaps = list(entry.gaps)
        else:
            v.ngaps = v.s1 = v.s2 = 0
        return v

    def _admit(self, key: str, entry: Visitor) -> Visitor:
        if len(self.visitors) >= self._max:
            for dropped, v in evict_least_recent(self.visitors, self._keep):
                self._unshare(dropped, v)
        self.visitors[key] = entry
        return entry

    def _unshare(self, key: str, entry: Visitor) -> None:
        """``key`` no longer maps to ``entry``: if it was a cookie's shared visitor, the
        check must look ``key`` up again."""
        if self.kind == "ip":
            if entry.via_ip == key:
                entry.via_ip = ""
        elif self.kind == "session" and entry.via_session == key:
            entry.via_session = ""

    def flagged(self, now_ms: int) -> Iterator[tuple[str, Visitor]]:
        """The tracker's own visitors whose flag still holds at ``now_ms``."""
        for key, v in self.visitors.items():
            if v.kind == self.kind and v.until >= now_ms and v.reason:
                yield key, v

    def to_state(self, cookies: VisitorTracker | None = None) -> dict[str, list[list[Any]]]:
        """Own visitors as ``[key, *FIELDS]``; keys sharing a cookie's visitor as
        ``[key, cookie]``, or ``[key, cookie, *FIELDS]`` if ``cookies`` dropped it."""
        own: list[list[Any]] = []
        shared: list[list[Any]] = []
        for key in sorted(self.visitors):
            v = self.visitors[key]
            if v.kind == self.kind:
                own.append([key, *v.row()])
            elif cookies is not None and cookies.visitors.get(v.key) is v:
                shared.append([key, v.key])
            else:
                shared.append([key, v.key, *v.row()])
        return {"visitors": own, "shared": shared}

    def load_state(
        self, state: dict[str, list[list[Any]]], cookies: VisitorTracker | None = None
    ) -> None:
        """Restore what ``to_state`` exported (``cookies`` restored first)."""
        self.visitors.clear()
        n_gaps = self._n_gaps
        for key, *row in state["visitors"]:
            self.visitors[str(key)] = Visitor.from_row(self.kind, str(key), row, n_gaps)
        for key, cookie, *row in state["shared"]:
            if row:
                v = Visitor.from_row("cookie", str(cookie), row, n_gaps)
            elif cookies is not None and str(cookie) in cookies.visitors:
                v = cookies.visitors[str(cookie)]
            else:
                raise ValueError(f"{self.kind} {key!r} shares an unknown cookie {cookie!r}")
            self.visitors[str(key)] = v
