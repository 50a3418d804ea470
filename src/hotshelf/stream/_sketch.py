"""Heavy hitters in bounded memory: batched Misra-Gries, the dual of Space-Saving.

A table keeps at most ``limit`` integer counters. When an insert pushes it past
``limit``, the (c+1)-th largest counter δ is subtracted from every counter and the
ones left at or below zero are dropped (one decrement step of Misra-Gries, done for a
whole batch), leaving at most ``c`` (``capacity``). Each step takes δ from at least
c+1 counters, so the decrements Δ add up to at most N/(c+1) for a stream of total
weight N, and for every key:

    estimate <= true weight <= estimate + Δ,    Δ <= N / (c + 1)

which is the Space-Saving guarantee (a Space-Saving counter is this estimate plus
Δ; the two algorithms are isomorphic). Batching keeps the common path to one dict
update: the O(n) prune runs once per ~c inserts.

A table may count several columns at once (one per time window): a row is then one
int holding a 96-bit lane per column, so adding to every column is one integer
addition. Each column is its own Misra-Gries table; the columns share keys, a key
is dropped when all its columns are, and a table holds at most ``(width + 1) * c``
keys (after a prune at most ``c`` positive counters per column).

Everything is integer arithmetic, so a table depends only on the order of its
updates, never on how they were batched or on dict iteration order: what makes state
rebuilt from the log byte-identical.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

__all__ = ["LANE_BITS", "HeavyHitters", "decrement_prune", "lane", "merged", "pack", "unpack"]

LANE_BITS = 96
_LANE_MASK = (1 << LANE_BITS) - 1


def pack(values: Iterable[int]) -> int:
    """One row from per-column values (each non-negative and below 2**96)."""
    row = 0
    for j, value in enumerate(values):
        row |= value << (LANE_BITS * j)
    return row


def unpack(row: int, width: int) -> list[int]:
    return [(row >> (LANE_BITS * j)) & _LANE_MASK for j in range(width)]


def lane(row: int, column: int) -> int:
    """One column of a row."""
    return (row >> (LANE_BITS * column)) & _LANE_MASK


def decrement_prune(counters: dict[str, int], capacity: int) -> tuple[dict[str, int], int]:
    """One batched Misra-Gries step on plain counters: the kept counters and the δ taken."""
    if len(counters) <= capacity:
        return counters, 0
    delta = heapq.nlargest(capacity + 1, counters.values())[-1]
    return {k: v - delta for k, v in counters.items() if v > delta}, delta


class HeavyHitters:
    """Integer weights per key in ``width`` columns; error per column at most ``decrement``."""

    __slots__ = ("capacity", "counters", "decrement", "limit", "removed", "width")

    def __init__(self, capacity: int, width: int = 1) -> None:
        if capacity < 1 or width < 1:
            raise ValueError("capacity and width must be at least 1")
        self.capacity = capacity
        self.width = width
        self.limit = (width + 1) * capacity
        self.counters: dict[str, int] = {}  # key -> row
        self.decrement = [0] * width  # Δ per column: the δ subtracted so far
        self.removed = [0] * width  # weight taken out by decrements (N = sums + removed)

    def add(self, key: str, row: int) -> None:
        """Add ``row`` (a packed row; a plain weight when ``width`` is 1) to ``key``."""
        counters = self.counters
        have = counters.get(key)
        if have is None:
            counters[key] = row
            if len(counters) > self.limit:
                self.prune()
        else:
            counters[key] = have + row

    def prune(self) -> None:
        """Subtract each column's (capacity+1)-th largest counter; keep keys left positive."""
        if len(self.counters) <= self.capacity:
            return
        if self.width == 1:
            self._prune_one()
            return
        columns = [unpack(row, self.width) for row in self.counters.values()]
        deltas = []
        for j in range(self.width):
            top = heapq.nlargest(self.capacity + 1, (values[j] for values in columns))
            deltas.append(top[-1] if len(top) > self.capacity else 0)
        kept: dict[str, int] = {}
        sums = [0] * self.width
        for key, values in zip(self.counters, columns, strict=True):
            new = [v - d if v > d else 0 for v, d in zip(values, deltas, strict=True)]
            if any(new):
                kept[key] = pack(new)
                for j, v in enumerate(new):
                    sums[j] += v
        before = [sum(values[j] for values in columns) for j in range(self.width)]
        for j in range(self.width):
            self.removed[j] += before[j] - sums[j]
            self.decrement[j] += deltas[j]
        self.counters = kept

    def _prune_one(self) -> None:
        counters = self.counters
        kept, delta = decrement_prune(counters, self.capacity)
        self.removed[0] += sum(counters.values()) - sum(kept.values())
        self.decrement[0] += delta
        self.counters = kept

    def rescale(self, multipliers: list[int], shift: int) -> None:
        """Multiply column j by ``multipliers[j] / 2**shift`` (rounding down); drop zero rows."""

        def scaled(values: list[int]) -> list[int]:
            return [(v * m) >> shift for v, m in zip(values, multipliers, strict=True)]

        kept: dict[str, int] = {}
        for key, row in self.counters.items():
            values = scaled(unpack(row, self.width))
            if any(values):
                kept[key] = pack(values)
        self.counters = kept
        self.decrement = scaled(self.decrement)
        self.removed = scaled(self.removed)

    def totals(self) -> list[int]:
        """N per column: the weight of every update so far (scaled like the counters)."""
        sums = [0] * self.width
        for row in self.counters.values():
            for j, v in enumerate(unpack(row, self.width)):
                sums[j] += v
        return [s + r for s, r in zip(sums, self.removed, strict=True)]

    def estimate(self, key: str, column: int = 0) -> int:
        """A lower bound of ``key``'s weight; the upper bound is this plus ``decrement``."""
        return lane(self.counters.get(key, 0), column)

    def top(self, k: int, column: int = 0) -> list[tuple[str, int]]:
        """The ``k`` largest estimates of ``column``, ties by key."""
        best = heapq.nsmallest(k, ((-lane(row, column), key) for key, row in self.counters.items()))
        return [(key, -neg) for neg, key in best if neg < 0]

    def __len__(self) -> int:
        return len(self.counters)

    def to_state(self) -> list[Any]:
        """``[decrement, removed, {key: row}]``, a row as little-endian bytes (msgpack's
        ints stop at 64 bits, packed rows do not)."""
        rows = {
            key: row.to_bytes((row.bit_length() + 7) // 8, "little")
            for key, row in self.counters.items()
        }
        return [self.decrement, self.removed, rows]

    @classmethod
    def from_state(cls, capacity: int, width: int, state: list[Any]) -> HeavyHitters:
        self = cls(capacity, width)
        decrement, removed, rows = state
        if len(decrement) != width or len(removed) != width:
            raise ValueError(f"state has {len(decrement)} columns, not {width}")
        self.decrement = [int(v) for v in decrement]
        self.removed = [int(v) for v in removed]
        self.counters = {str(k): int.from_bytes(row, "little") for k, row in rows.items()}
        if len(self.counters) > self.limit:
            self.prune()
        return self


def merged(tables: Iterable[HeavyHitters]) -> tuple[dict[str, int], list[int]]:
    """Rows summed over tables that count disjoint parts of one stream, and their Δ.

    The error of a sum is the sum of the errors, so the bound carries over: Δ of the
    merge is at most N/(c+1) for the N of all the parts together.
    """
    rows: dict[str, int] = {}
    decrement: list[int] = []
    for table in tables:
        if not decrement:
            decrement = [0] * table.width
        for j, d in enumerate(table.decrement):
            decrement[j] += d
        if not rows:
            rows = dict(table.counters)
            continue
        get = rows.get
        for key, row in table.counters.items():
            rows[key] = get(key, 0) + row
    return rows, decrement
