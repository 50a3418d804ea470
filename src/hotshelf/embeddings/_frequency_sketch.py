"""``FrequencySketch``: how often each key was asked for lately, in fixed memory.

A count-min sketch (Cormode & Muthukrishnan) with conservative update (a key raises
only those of its counters that hold its current minimum, which keeps collisions from
inflating rarely seen keys) and TinyLFU's aging (Einziger, Friedman & Manes, "TinyLFU:
A Highly Efficient Cache Admission Policy", 2017): after ``10 x capacity`` recorded
accesses every counter is halved, so the estimates follow what is popular *now* and a
key that was hot last week fades out. Counters are bytes that saturate at 255: aging
keeps real counts far below, and 4 rows of ``8 x capacity`` bytes cost 32 bytes per
cached vector (a 384-dim float32 vector is 1,536).

Everything works on whole batches with numpy: a request of 50 keys costs one hash per
key (Python's ``hash``, cached inside each ``str``) and a handful of array operations,
never a loop over counters. Hashes are salted per process (``PYTHONHASHSEED``), which
is fine for a structure that lives and dies with the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["FrequencySketch", "KeyHashes"]

KeyHashes: TypeAlias = npt.NDArray[np.uint64]

_DEPTH = 4
# Counters per row: with conservative update, 8 x capacity keeps the over-estimate of
# a key seen once below one access, even just before a halving (10 x capacity accesses).
_WIDTH_PER_ITEM = 8
_SATURATED = 255
_MIN_WIDTH = 256
_AGING_PERIOD = 10  # accesses per cached item between two halvings, as in TinyLFU


class FrequencySketch:
    """Approximate recent access counts of string keys (count-min, 4 rows, halving)."""

    def __init__(self, capacity: int, *, seed: int | None = None) -> None:
        width = max(_MIN_WIDTH, 1 << (max(1, capacity) * _WIDTH_PER_ITEM - 1).bit_length())
        self.width = width
        self._table = np.zeros(_DEPTH * width, dtype=np.uint8)
        rng = np.random.default_rng(seed)
        # Odd multipliers: multiplicative hashing, one independent-enough row index each.
        seeds = rng.integers(1, 2**63, size=(_DEPTH, 1), dtype=np.uint64) * np.uint64(2)
        self._seeds = seeds + np.uint64(1)
        self._shift = np.uint64(64 - (width.bit_length() - 1))
        self._row_base = (np.arange(_DEPTH, dtype=np.uint64) * np.uint64(width))[:, None]
        self._added = 0
        self._period = max(1, capacity) * _AGING_PERIOD

    @staticmethod
    def hashes(keys: Sequence[str]) -> KeyHashes:
        """The 64-bit hashes the sketch indexes by, one per key."""
        return np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)).view(np.uint64)

    def _slots(self, hashes: KeyHashes) -> npt.NDArray[np.uint64]:
        # uint64 products wrap modulo 2**64, which is what multiplicative hashing wants.
        return (hashes[None, :] * self._seeds >> self._shift) + self._row_base

    def add(self, hashes: KeyHashes) -> None:
        """Count one access per hash: a key ``n`` times in ``hashes`` counts ``n``."""
        if len(hashes) == 0:
            return
        ordered = np.sort(hashes)
        repeated = ordered[1:] == ordered[:-1]
        if repeated.any():
            self._raise_by_counts(ordered, repeated)
        else:  # one request's reads, usually: the cheaper update
            self._raise_by_one(hashes)
        self._added += len(hashes)
        if self._added >= self._period:
            self._table >>= np.uint8(1)
            self._added //= 2

    def _raise_by_one(self, hashes: KeyHashes) -> None:
        """Conservative update of distinct keys: each key's counters that hold its
        minimum rise by one. A counter two keys share is raised only if it is the
        minimum of both, and then both write the same value."""
        slots = self._slots(hashes)
        counters = self._table[slots]
        least = counters.min(axis=0)
        raise_ = (counters == least) & (least < _SATURATED)
        self._table[slots[raise_]] = (least + np.uint8(1))[np.nonzero(raise_)[1]]

    def _raise_by_counts(self, ordered: KeyHashes, repeated: npt.NDArray[np.bool_]) -> None:
        """Conservative update by ``n`` for a key ``n`` times in ``ordered`` (sorted):
        each of its counters rises to at most its estimate plus ``n``; a counter keys
        share keeps the largest any of them asks for (``maximum.at`` applies them all)."""
        starts = np.flatnonzero(np.concatenate(([True], ~repeated)))
        slots = self._slots(ordered[starts])
        least = self._table[slots].min(axis=0)
        times = np.diff(starts, append=len(ordered))
        wanted = np.minimum(least + times, _SATURATED).astype(np.uint8)
        np.maximum.at(self._table, slots.ravel(), np.tile(wanted, _DEPTH))

    def estimate(self, hashes: KeyHashes) -> npt.NDArray[np.uint8]:
        """Estimated recent accesses of each key (count-min errs upward, on collisions)."""
        if len(hashes) == 0:
            return np.zeros(0, dtype=np.uint8)
        counts: npt.NDArray[np.uint8] = self._table[self._slots(hashes)].min(axis=0)
        return counts
