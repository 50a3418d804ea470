"""Trending and popular items per segment, over several windows with time decay.

Segments are location x device x category (the item's top-level category). Each
engagement adds to four heavy-hitter tables: its own segment's, its location's
(``loc/*/*``), its device x category's (``*/dev/cat``) and the global one
(``*/*/*``). The other roll-ups are sums of these at query time (``loc/*/cat`` of
the segment's few devices, ``*/*/cat`` of the device x category tables ...): a sum of
Misra-Gries tables over disjoint parts of a stream keeps the same error bound.

Windows decay exponentially on event time with forward decay (Cormode et al., 2009):
an engagement at second t adds ``round(2**16 * e**((t - L) / tau))`` to a counter
instead of decaying every counter as time passes; at query time a counter divided
by ``2**16 * e**((now - L) / tau)`` is the decayed count. All state is integers, so it
does not depend on batching. The landmark L moves forward (every counter rescaled,
in integers) before the weights grow large.

Each table has one column per window plus one for ``trend_baseline_s``. *Popular*
ranks by the window's decayed units; *trending* compares the window with the next
longer one (the baseline): with S the units in the window (time constant tau) and B
the baseline's (tau_b), the baseline predicts E = B * tau / tau_b and the score is the
Poisson z-score (S - E) / sqrt(E + trend_smoothing), for items with S >= min_support.
B is taken at its upper bound (estimate + Δ) so an item the baseline table dropped
does not look like it came from nowhere.

Memory: at most ``(W + 1) * c`` keys per table (W = windows + 1 columns, c the
table's capacity), tables <= ``max_segments`` + devices x categories (overflow
segments, location "(other)").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

from hotshelf.config import StreamConfig
from hotshelf.stream._sketch import HeavyHitters, lane, merged, pack

__all__ = [
    "ANY",
    "NO_VALUE",
    "OTHER",
    "DecayClock",
    "Leaf",
    "TrendIndex",
    "device_key",
    "popular_over",
    "trending_over",
]

ANY = "*"
NO_VALUE = "(none)"
OTHER = "(other)"
KNOWN_DEVICES = frozenset({"mobile", "desktop", "tablet", "tv", "console", "wearable"})
FRACTION_BITS = 16
_RESCALE_BITS = 32
# The landmark moves when the shortest window's weight reaches e**8 (about 2**11.5):
# one unit then weighs at most 2**27.5, so counters stay small ints (fast in CPython)
# and ~2**68 units away from overflowing their 96-bit lane.
_MAX_EXPONENT = 8.0
_SEP = "\x1f"  # joins a segment's parts into one string key for the snapshot


class DecayClock:
    """Forward-decay weights as integers, one per time constant, for whole seconds."""

    def __init__(self, taus_s: list[float]) -> None:
        self.taus = taus_s
        self.landmark_s: int | None = None
        self._horizon_s = _MAX_EXPONENT * min(taus_s)
        self._cache: dict[int, int] = {}

    def weights(self, t_s: int) -> int:
        """What one unit at second ``t_s`` adds to each column, as a packed row."""
        cached = self._cache.get(t_s)
        if cached is None:
            if self.landmark_s is None:
                self.landmark_s = t_s
            age = t_s - self.landmark_s
            one = float(1 << FRACTION_BITS)
            cached = pack(round(one * math.exp(age / tau)) for tau in self.taus)
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[t_s] = cached
        return cached

    def due(self, t_s: int) -> bool:
        """Whether the landmark must move before adding at ``t_s``."""
        return self.landmark_s is not None and t_s - self.landmark_s > self._horizon_s

    def move_to(self, t_s: int) -> list[int]:
        """Move the landmark to ``t_s``; returns the Q32 multipliers that rescale each column."""
        assert self.landmark_s is not None
        age = t_s - self.landmark_s
        self.landmark_s = t_s
        self._cache.clear()
        return [round(math.exp(-age / tau) * (1 << _RESCALE_BITS)) for tau in self.taus]

    def decay(self, column: int, now_ms: int) -> float:
        """Multiply a counter of ``column`` by this to get its decayed value at ``now_ms``."""
        age = 0.0 if self.landmark_s is None else now_ms / 1000.0 - self.landmark_s
        # e**-700 is as good as zero; e**700 (a "now" long before the landmark) stays finite
        exponent = max(-700.0, min(700.0, -age / self.taus[column]))
        return math.exp(exponent) / (1 << FRACTION_BITS)


class Leaf:
    """One location x device x category segment: event counts and the tables it feeds."""

    __slots__ = ("counts", "key", "tables")

    def __init__(self, key: tuple[str, str, str], tables: list[HeavyHitters], n_types: int):
        self.key = key
        self.tables = tables
        self.counts = [0] * n_types


def device_key(device: str | None) -> str:
    """The device part of a segment: a known kind of device, else "(other)"."""
    if device is None:
        return NO_VALUE
    device = device.strip().lower()
    return device if device in KNOWN_DEVICES else OTHER


def _join(key: tuple[str, str, str]) -> str:
    return _SEP.join(key)


def _split(text: str) -> tuple[str, str, str]:
    loc, dev, cat = text.split(_SEP)
    return loc, dev, cat


def _matches(key: tuple[str, str, str], pattern: tuple[str, str, str]) -> bool:
    return all(p in (ANY, k) for k, p in zip(key, pattern, strict=True))


class TrendIndex:
    """Decayed units per item and segment; ``trending_over``/``popular_over`` query them."""

    def __init__(self, config: StreamConfig, n_types: int) -> None:
        self.windows = sorted(config.windows_s)
        self.clock = DecayClock([*self.windows, config.trend_baseline_s])
        self.width = len(self.windows) + 1
        self._config = config
        self._n_types = n_types
        self.tables: dict[tuple[str, str, str], HeavyHitters] = {}
        self.leaves: dict[tuple[str, str, str], Leaf] = {}
        # (location, device, category) as events give them -> Leaf: a cache of ``leaf``,
        # not state; callers on the hot path try it before calling ``leaf``
        self.resolved: dict[tuple[str | None, str | None, str], Leaf] = {}
        # pattern -> the tables a query of it sums (``_tables_for``), while no table is
        # added: a cache, not state (finding them scans every table, ~1-2 ms)
        self._pattern_tables: dict[tuple[str, str, str], list[HeavyHitters]] = {}
        self._last_s, self._last_weights = -1, 0  # the weights of the last second added at
        self._table((ANY, ANY, ANY))

    # -- segments --------------------------------------------------------------

    def _table(self, key: tuple[str, str, str]) -> HeavyHitters:
        table = self.tables.get(key)
        if table is None:
            leaf = ANY not in key
            capacity = (
                self._config.segment_sketch_capacity if leaf else self._config.sketch_capacity
            )
            table = self.tables[key] = HeavyHitters(capacity, self.width)
            self._pattern_tables.clear()  # a new table may belong to a pattern's sum
        return table

    def _leaf(self, key: tuple[str, str, str]) -> Leaf:
        loc, dev, cat = key
        keys = [key, (loc, ANY, ANY), (ANY, dev, cat), (ANY, ANY, ANY)]
        leaf = self.leaves[key] = Leaf(key, [self._table(k) for k in keys], self._n_types)
        return leaf

    def leaf(self, location: str | None, device: str | None, category: str) -> Leaf:
        """The segment of an event; new locations past ``max_segments`` share "(other)"."""
        raw = (location, device, category)
        leaf = self.resolved.get(raw)
        if leaf is not None:
            return leaf
        key = (location or NO_VALUE, device_key(device), category)
        leaf = self.leaves.get(key)
        if leaf is None:
            if len(self.tables) + 3 > self._config.max_segments:
                key = (OTHER, key[1], category)
                leaf = self.leaves.get(key)
            if leaf is None:
                leaf = self._leaf(key)
        if len(self.resolved) >= 4 * self._config.max_segments:
            self.resolved.clear()  # a cache of the mapping above, not state
        self.resolved[raw] = leaf
        return leaf

    # -- updates ---------------------------------------------------------------

    def add(self, leaf: Leaf, item: str, units: int, t_s: int) -> None:
        """``units`` of engagement with ``item`` at second ``t_s`` in ``leaf``'s segment."""
        if t_s == self._last_s:
            weights = self._last_weights * units
        else:
            weights = self._weights_at(t_s) * units
        if not weights:
            return  # so old that it rounds to nothing in every column
        for table in leaf.tables:
            counters = table.counters
            row = counters.get(item, 0)  # a kept row is never 0: 0 is a new key
            counters[item] = row + weights
            if not row and len(counters) > table.limit:
                table.prune()

    def _weights_at(self, t_s: int) -> int:
        clock = self.clock
        if clock.due(t_s):
            multipliers = clock.move_to(t_s)
            for table in self.tables.values():
                table.rescale(multipliers, _RESCALE_BITS)
        self._last_s, self._last_weights = t_s, clock.weights(t_s)
        return self._last_weights

    # -- queries ---------------------------------------------------------------

    def window_index(self, window_s: float) -> int | None:
        for i, w in enumerate(self.windows):
            if w == window_s:
                return i
        return None

    def _tables_for(self, pattern: tuple[str, str, str]) -> list[HeavyHitters]:
        exact = self.tables.get(pattern)
        if exact is not None:
            return [exact]
        found = self._pattern_tables.get(pattern)
        if found is None:
            # Sums over the finest stored tables that partition the pattern: the device
            # x category roll-ups when every location is asked for, else the segments.
            want_location = pattern[0] != ANY
            found = self._pattern_tables[pattern] = [
                table
                for key, table in self.tables.items()
                if key[1] != ANY
                and key[2] != ANY
                and (key[0] != ANY) == want_location
                and _matches(key, pattern)
            ]
        return found

    def counts(self, pattern: tuple[str, str, str]) -> list[int]:
        """Event counts per type summed over the segments in ``pattern``."""
        total = [0] * self._n_types
        for key, leaf in self.leaves.items():
            if _matches(key, pattern):
                for j, n in enumerate(leaf.counts):
                    total[j] += n
        return total

    # -- snapshots -------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "landmark_s": self.clock.landmark_s,
            "tables": {_join(k): t.to_state() for k, t in self.tables.items()},
            "counts": {_join(k): leaf.counts for k, leaf in self.leaves.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        landmark = state["landmark_s"]
        self.clock.landmark_s = None if landmark is None else int(landmark)
        self._last_s, self._last_weights = -1, 0
        self.tables = {}
        self._pattern_tables = {}
        for text, table in state["tables"].items():
            key = _split(text)
            capacity = (
                self._config.segment_sketch_capacity
                if ANY not in key
                else self._config.sketch_capacity
            )
            self.tables[key] = HeavyHitters.from_state(capacity, self.width, table)
        self._table((ANY, ANY, ANY))
        self.leaves, self.resolved = {}, {}
        for text, counts in state["counts"].items():
            leaf = self._leaf(_split(text))
            leaf.counts = [int(n) for n in counts]


# -- queries over several indexes ----------------------------------------------------
# The lanes of one processor and the partitions of a processor group each count a
# disjoint part of the stream, so an item's units are the sums of its parts' (decayed
# each by its own clock: the landmarks differ). A Misra-Gries sum over disjoint parts
# keeps the bound; with one index these are exactly the single-table answers.


def _parts(
    indexes: Sequence[TrendIndex], pattern: tuple[str, str, str]
) -> list[tuple[TrendIndex, dict[str, int], list[int]]]:
    found = []
    for index in indexes:
        if index.clock.landmark_s is None:
            continue  # nothing counted yet
        rows, decrement = merged(index._tables_for(pattern))
        if rows:
            found.append((index, rows, decrement))
    return found


def popular_over(
    indexes: Sequence[TrendIndex],
    pattern: tuple[str, str, str],
    window: int,
    k: int,
    now_ms: int,
) -> list[tuple[str, float]]:
    """The ``k`` items with the most decayed units in ``window`` over all ``indexes``."""
    parts = _parts(indexes, pattern)
    if len(parts) == 1:  # the common case: integers rank exactly, decay once at the end
        index, rows, _ = parts[0]
        decay = index.clock.decay(window, now_ms)
        best = heapq.nsmallest(k, ((-lane(row, window), key) for key, row in rows.items()))
        return [(key, -neg * decay) for neg, key in best if neg < 0]
    totals: dict[str, float] = {}
    for index, rows, _ in parts:
        decay = index.clock.decay(window, now_ms)
        for key, row in rows.items():
            totals[key] = totals.get(key, 0.0) + lane(row, window) * decay
    best_f = heapq.nsmallest(k, ((-units, key) for key, units in totals.items()))
    return [(key, -neg) for neg, key in best_f if neg < 0]


def trending_over(
    indexes: Sequence[TrendIndex],
    pattern: tuple[str, str, str],
    window: int,
    k: int,
    now_ms: int,
) -> list[tuple[str, float]]:
    """The ``k`` items rising most against their baseline over all ``indexes``, by z-score.

    The baseline of each part is taken at its upper bound (estimate + that part's Δ),
    also for parts that dropped the item or never saw it.
    """
    parts = _parts(indexes, pattern)
    if not parts:
        return []
    base = window + 1
    observed: dict[str, float] = {}
    expected: dict[str, float] = {}
    slack_total = 0.0
    for index, rows, decrement in parts:
        clock = index.clock
        decay, base_decay = clock.decay(window, now_ms), clock.decay(base, now_ms)
        ratio = clock.taus[window] / clock.taus[base]
        slack = decrement[base]
        slack_total += slack * base_decay * ratio
        for key, row in rows.items():
            observed[key] = observed.get(key, 0.0) + lane(row, window) * decay
            # this part's slack is in slack_total; only the estimate is per item
            expected[key] = expected.get(key, 0.0) + lane(row, base) * base_decay * ratio
    config = parts[0][0]._config
    support, smoothing = config.min_support, config.trend_smoothing
    scored = []
    for key, s in observed.items():
        if s < support:
            continue
        e = expected[key] + slack_total
        z = (s - e) / math.sqrt(e + smoothing)
        if z > 0:
            scored.append((-z, key))
    return [(key, -neg) for neg, key in heapq.nsmallest(k, scored)]
