"""Dropping the oldest entries of a table, deterministically.

Bounded tables of the stream state forget their least recently active entries
(by event time) in batches: when a table grows past its limit, the oldest ones are
dropped until ``keep`` remain, ties broken by key. The choice depends only on the
entries, never on dict order or the wall clock, so a replay drops exactly the same
ones; dropping an eighth at a time keeps the cost amortised.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TypeVar

__all__ = ["keep_after_trim", "trim_oldest"]

V = TypeVar("V")


def keep_after_trim(limit: int) -> int:
    """How many entries a table of at most ``limit`` keeps when it trims."""
    return max(1, limit - max(1, limit // 8))


def trim_oldest(table: dict[str, V], age: Callable[[V], int], keep: int) -> list[str]:
    """Drop the entries with the smallest ``age`` (ties: smallest key) until ``keep`` remain;
    returns the keys dropped."""
    excess = len(table) - keep
    if excess <= 0:
        return []
    doomed = [
        k for k, _ in heapq.nsmallest(excess, table.items(), key=lambda kv: (age(kv[1]), kv[0]))
    ]
    for key in doomed:
        del table[key]
    return doomed
