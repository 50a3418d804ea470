"""Co-engagement: items viewed, carted or bought together within sessions.

When a session engages with an item new to its list of that kind, the item is
paired with the last ``co_window`` items of the list, both ways; a purchase also
pairs the items bought together. Each item keeps its partners as Misra-Gries counters
(``_sketch.decrement_prune``) of ``related_capacity``: the top partners are kept,
each count at most (pairings of the item) / (capacity + 1) below the truth. Items
past ``max_related_items`` per kind are dropped least recently paired first (by the
event time of their latest pairing, ties by id).

Per item the counters are a plain ``dict[str, int]`` and the bookkeeping lives in
other int-valued dicts, so the cyclic GC does not track any of it; the rankings below
are tuples of str, which it stops tracking at their first collection.

Rankings. A query ranks an item's partners (two sorts of up to ``2 * capacity``
entries, ~25 µs for 200) and a browsing recommendation asks for several seeds at
once, so the order is kept per item until its counters change: ``pair`` (the prunes
included) forgets the rankings of the items it touched, and a dropped item's is never
read (a query finds no partners; a new pairing forgets it first). Forgetting checks an
empty dict when nothing was ranked: the processor pays nothing without queries. At most
``RANKED_ITEMS`` rankings per kind are kept, the oldest forgotten first.

Memory: at most ``3 * max_related_items * 2 * related_capacity`` counters, plus
``3 * RANKED_ITEMS`` rankings of at most ``2 * related_capacity`` references each
(~10 MB at the defaults).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hotshelf.stream._bounded import keep_after_trim, trim_oldest
from hotshelf.stream._sketch import decrement_prune

__all__ = ["KINDS", "RANKED_ITEMS", "CoEngagement"]

KINDS = ("viewed", "carted", "bought")
RANKED_ITEMS = 2048


class _Kind:
    """Partners per item for one kind, when each item was last paired, its Δ, and the
    partners' order for the items queried since their counters last changed."""

    __slots__ = ("decrement", "last_s", "partners", "ranked")

    def __init__(self) -> None:
        self.partners: dict[str, dict[str, int]] = {}
        self.last_s: dict[str, int] = {}
        self.decrement: dict[str, int] = {}  # only items that were pruned
        # item -> its partners, best first: a tuple of str, which the cyclic GC stops
        # tracking at its first collection (as lists, a full collection in a serving
        # process visited every string of up to RANKED_ITEMS rankings per kind)
        self.ranked: dict[str, tuple[str, ...]] = {}


class CoEngagement:
    """Top partners per item for each kind in ``KINDS``."""

    def __init__(self, capacity: int, max_items: int) -> None:
        self._capacity = capacity
        self._limit = 2 * capacity
        self._max_items = max_items
        self.kinds = tuple(_Kind() for _ in KINDS)

    def _new(self, kind: _Kind, item: str, t_s: int) -> dict[str, int]:
        if len(kind.partners) >= self._max_items:
            for dropped in trim_oldest(kind.last_s, int, keep_after_trim(self._max_items)):
                del kind.partners[dropped]
                kind.decrement.pop(dropped, None)
        kind.last_s[item] = t_s
        counters: dict[str, int] = {}
        kind.partners[item] = counters
        return counters

    def _prune(self, kind: _Kind, item: str, counters: dict[str, int]) -> None:
        kept, delta = decrement_prune(counters, self._capacity)
        kind.partners[item] = kept
        kind.decrement[item] = kind.decrement.get(item, 0) + delta

    def pair(self, which: int, item: str, others: Sequence[str], t_s: int) -> None:
        """Count ``item`` together with each of ``others`` (both ways).

        A native call per count (compiled by mypyc) costs less than looping over the two
        directions as tuples: it runs for every item new to a session's list.
        """
        kind = self.kinds[which]
        for other in others:
            if other == item:
                continue
            self._count(kind, item, other, t_s)
            self._count(kind, other, item, t_s)
        ranked = kind.ranked
        if ranked:  # the counters of item and of each other changed
            ranked.pop(item, None)
            for other in others:
                ranked.pop(other, None)

    def _count(self, kind: _Kind, one: str, two: str, t_s: int) -> None:
        """One more time ``two`` went with ``one``, at second ``t_s``."""
        counters = kind.partners.get(one)
        if counters is None:
            counters = self._new(kind, one, t_s)
        else:
            kind.last_s[one] = t_s
        have = counters.get(two)
        if have is not None:
            counters[two] = have + 1
        else:
            counters[two] = 1
            if len(counters) > self._limit:
                self._prune(kind, one, counters)

    def related(self, which: int, item: str, k: int) -> list[tuple[str, int]]:
        """Up to ``k`` partners of ``item`` with their (lower-bound) counts, best first
        (ties by partner id); the order is kept until the counters change. Two stable
        sorts keyed in C, by id then by count: 2.4x faster than one sort on a
        (-count, id) key."""
        kind = self.kinds[which]
        counters = kind.partners.get(item)
        if not counters:
            return []
        order = kind.ranked.get(item)
        if order is None:
            by_count = sorted(counters)
            by_count.sort(key=counters.__getitem__, reverse=True)
            if len(kind.ranked) >= RANKED_ITEMS:
                del kind.ranked[next(iter(kind.ranked))]
            order = kind.ranked[item] = tuple(by_count)
        top = order[:k]
        return list(zip(top, map(counters.__getitem__, top), strict=True))

    def __len__(self) -> int:
        return sum(len(kind.partners) for kind in self.kinds)

    def to_state(self) -> dict[str, Any]:
        return {
            name: {
                item: [kind.last_s[item], kind.decrement.get(item, 0), counters]
                for item, counters in kind.partners.items()
            }
            for name, kind in zip(KINDS, self.kinds, strict=True)
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.kinds = tuple(_Kind() for _ in KINDS)
        for name, kind in zip(KINDS, self.kinds, strict=True):
            for item, (last_s, decrement, counters) in state[name].items():
                key = str(item)
                kind.partners[key] = {str(k): int(v) for k, v in counters.items()}
                kind.last_s[key] = int(last_s)
                if decrement:
                    kind.decrement[key] = int(decrement)
