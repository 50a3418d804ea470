"""What one engagement is worth to the trend scores: distinct visitors, capped, spike-guarded.

Three defences, in this order, before anything reaches the trend tables:

1. **Distinct visitors, capped.** A visitor (user id, else cookie) counts once per item
   per ``visitor_horizon_s`` of event time, with the weight of its deepest funnel step
   (a view, then a cart, adds the cart's weight minus the view's). One visitor can
   add at most ``max(event_weights)`` to an item per horizon however many events it
   sends: 100x click spam from four cookies is worth four clicks.
2. **Per-IP cap.** At most ``ip_visitor_cap`` visitors per IP hash count per item per
   horizon, against cookie cycling from few addresses.
3. **Spike guard.** Per item, new visitors are counted per ``spike_interval_s``. An
   interval may admit ``max(spike_floor, previous interval's demand,
   median + spike_mads * 1.4826 * MAD)`` of the last ``spike_history`` intervals; the
   rest of a spike is not counted. Median and MAD ignore a few wild intervals, so the
   guard adapts to an item's normal level but not to a burst; allowing the previous
   interval's demand means a surge that lasts (a real hot item) is admitted from its
   second interval on, while one shorter than an interval never is. A burst from many
   fresh identities that outlasts an interval is the bot filter's to catch.

Everything here is keyed by event time and bounded: a pair table past
``max_visitor_pairs`` loses the pairs expiring soonest, spike history past
``max_spike_items`` the stalest items.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from hotshelf.config import StreamConfig
from hotshelf.stream._bounded import keep_after_trim, trim_oldest

__all__ = ["ContributionGate", "SpikeGuard"]

_LOW = 0xFFFF  # low 16 bits of a pair: best weight so far (or count of visitors per IP)
_BLOCKED = _LOW  # a visitor that was capped or clipped stays out for the horizon
_MAD_TO_SIGMA = 1.4826


def _median(values: Sequence[float]) -> float:
    """``statistics.median`` of a non-empty sequence (the same value and type), without
    its generic checks: it runs for every item at every spike interval."""
    ordered = sorted(values)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) / 2


class SpikeGuard:
    """Per item, admits new visitors per interval up to a robust allowance.

    An item's entry is a tuple ``(interval, demand, allowance, past demands)``: tuples
    of ints are not tracked by the cyclic GC, lists would be.
    """

    def __init__(self, config: StreamConfig) -> None:
        self._interval_s = max(1, round(config.spike_interval_s))
        self._history = config.spike_history
        self._floor = config.spike_floor
        self._mads = config.spike_mads
        self._limit = config.max_spike_items
        self.items: dict[str, tuple[int, int, int, tuple[int, ...]]] = {}
        self.clipped = 0

    def admits(self, item: str, t_s: int) -> bool:
        """Count one new visitor of ``item`` at second ``t_s``; False if it is a spike's excess."""
        index = t_s // self._interval_s
        entry = self.items.get(item)
        if entry is None:
            if len(self.items) >= self._limit:
                self._trim(index)
            entry = (index, 0, self._floor, ())
        elif index > entry[0]:
            entry = self._rolled(entry, index)
        interval, demand, allowance, past = entry
        demand += 1
        self.items[item] = (interval, demand, allowance, past)
        if demand > allowance:
            self.clipped += 1
            return False
        return True

    def _rolled(
        self, entry: tuple[int, int, int, tuple[int, ...]], index: int
    ) -> tuple[int, int, int, tuple[int, ...]]:
        interval, demand, _, past = entry
        gap = index - interval
        zeros = (0,) * min(gap - 1, self._history)
        history = (*past, demand, *zeros)[-self._history :]
        mid = _median(history)
        mad = _median([abs(x - mid) for x in history])
        robust = math.ceil(mid + self._mads * _MAD_TO_SIGMA * mad)
        previous = demand if gap == 1 else 0
        return index, 0, max(self._floor, previous, robust), history

    def _trim(self, index: int) -> None:
        stale = index - self._history
        for item in [k for k, e in self.items.items() if e[0] < stale]:
            del self.items[item]  # its history is all zeros by now: as good as new
        if len(self.items) >= self._limit:
            trim_oldest(self.items, itemgetter(0), keep_after_trim(self._limit))

    def to_state(self) -> dict[str, Any]:
        items = {k: [i, d, a, list(p)] for k, (i, d, a, p) in self.items.items()}
        return {"clipped": self.clipped, "items": items}

    def load_state(self, state: dict[str, Any]) -> None:
        self.clipped = int(state["clipped"])
        self.items = {
            str(k): (int(i), int(d), int(a), tuple(int(x) for x in p))
            for k, (i, d, a, p) in state["items"].items()
        }


class PairTable:
    """(owner, item) -> packed int, kept as owner -> {item -> packed}: a visitor's (or an
    IP's) items share one lookup of its id, their keys are the lane's shared item
    strings (``Lane``), and no "owner + item" string is built per event. ``size`` counts
    pairs. Dicts of str -> int only: the cyclic GC does not track them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.owners: dict[str, dict[str, int]] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def put(self, owner: str, items: dict[str, int] | None, item: str, packed: int) -> None:
        """Set a pair; ``items`` is ``owner``'s dict as looked up just before (or None)."""
        if items is None:
            self.owners[owner] = {item: packed}
            self.size += 1
            return
        if item not in items:
            self.size += 1
        items[item] = packed

    def trim(self, t_s: int) -> None:
        """Forget expired pairs, then, if still too many, those expiring soonest (ties by
        owner, then item)."""
        owners = self.owners
        for owner, items in list(owners.items()):
            expired = [item for item, packed in items.items() if packed >> 16 <= t_s]
            for item in expired:
                del items[item]
            self.size -= len(expired)
            if not items:
                del owners[owner]
        if self.size < keep_after_trim(self.limit):
            return
        excess = self.size - keep_after_trim(keep_after_trim(self.limit))
        rows = (
            (packed >> 16, owner, item)
            for owner, items in owners.items()
            for item, packed in items.items()
        )
        for _, owner, item in heapq.nsmallest(excess, rows):
            items = owners[owner]
            del items[item]
            if not items:
                del owners[owner]
        self.size -= excess

    def to_state(self) -> dict[str, dict[str, int]]:
        return self.owners

    def load_state(self, state: dict[str, Any]) -> None:
        self.owners = {
            str(owner): {str(item): int(packed) for item, packed in items.items()}
            for owner, items in state.items()
        }
        self.size = sum(len(items) for items in self.owners.values())


class ContributionGate:
    """Turns one visitor's engagement with an item into trend units (often none)."""

    def __init__(self, config: StreamConfig) -> None:
        self._horizon_s = max(1, math.ceil(config.visitor_horizon_s))
        self._ip_cap = config.ip_visitor_cap
        self.guard = SpikeGuard(config)
        # visitor -> item -> (expiry second << 16) | best weight so far
        self.pairs = PairTable(config.max_visitor_pairs)
        # ip_hash -> item -> (expiry second << 16) | visitors counted
        self.ip_pairs = PairTable(config.max_visitor_pairs)
        self.ip_capped = 0

    def units(self, visitor: str, ip: str | None, item: str, weight: int, t_s: int) -> int:
        """Units to add to ``item`` for ``visitor``'s step of ``weight`` at second ``t_s``."""
        if weight <= 0:
            return 0
        pairs = self.pairs
        items = pairs.owners.get(visitor)
        packed = None if items is None else items.get(item)
        if packed is not None and items is not None and packed >> 16 > t_s:
            best = packed & _LOW
            if weight <= best or best == _BLOCKED:
                return 0
            items[item] = packed - best + weight
            return weight - best
        expiry = (t_s + self._horizon_s) << 16
        if pairs.size >= pairs.limit:
            pairs.trim(t_s)
            items = pairs.owners.get(visitor)
        if (ip is not None and not self._ip_admits(ip, item, t_s)) or not self.guard.admits(
            item, t_s
        ):
            pairs.put(visitor, items, item, expiry | _BLOCKED)
            return 0
        pairs.put(visitor, items, item, expiry | weight)
        return weight

    def _ip_admits(self, ip: str, item: str, t_s: int) -> bool:
        table = self.ip_pairs
        items = table.owners.get(ip)
        packed = None if items is None else items.get(item)
        if packed is None or items is None or packed >> 16 <= t_s:
            if table.size >= table.limit:
                table.trim(t_s)
                items = table.owners.get(ip)
            table.put(ip, items, item, ((t_s + self._horizon_s) << 16) | 1)
            return True
        if packed & _LOW >= self._ip_cap:
            self.ip_capped += 1
            return False
        items[item] = packed + 1
        return True

    def to_state(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs.to_state(),
            "ip_pairs": self.ip_pairs.to_state(),
            "ip_capped": self.ip_capped,
            "guard": self.guard.to_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.pairs.load_state(state["pairs"])
        self.ip_pairs.load_state(state["ip_pairs"])
        self.ip_capped = int(state["ip_capped"])
        self.guard.load_state(state["guard"])
