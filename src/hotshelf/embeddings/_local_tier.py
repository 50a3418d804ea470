"""``LocalTier``: the bounded in-process hot tier of the embedding store.

Memory is one preallocated, contiguous float32 matrix of ``capacity`` rows (committed
at construction, so no write pays a page fault later), a ``dict`` from key to row, and
rows freed by deletes on a free list; nothing grows past ``capacity``. A 50-key read
is one dict lookup per key (in one C loop) and ONE numpy gather, ``matrix.take(rows)``.

Eviction: TinyLFU admission over sampled-LFU eviction. Every read records its keys in
a ``FrequencySketch`` (a count-min sketch halved every ``10 x capacity`` accesses, so
frequencies age). While rows are free, any key is stored. Once full, a new key is
stored only if it was asked for more often lately than a victim: the least frequent
of ``sample`` rows drawn at random (Redis's approximated LFU works the same way).

Why this policy: a recommendation request mixes a few very popular items with a long
tail of one-off ones. LRU lets a burst of one-off keys (a crawler, a batch job)
flush the popular items; TinyLFU refuses them at the door, because their frequency
(one access) cannot beat the victims'. Aging keeps yesterday's hits from squatting.
And every operation is O(keys x sample) numpy work, never a scan of the tier.

Reads only *record* what they asked for in a bounded buffer (lossy when full, like
Caffeine's read buffer): a full hit its rows' stored hashes (one numpy ``take``), a
partial hit its keys. The sketch takes them in at the next write, where admission
needs the estimates, on the writer's thread (the store's refresher) and *outside* the
tier's lock: counting a buffer of 16k reads is array work (~1 ms, most of it run by
numpy without the GIL), so a read arriving meanwhile waits for neither. The hot read
path is a lock, the dict lookups, and two gathers.

Writes do not count as accesses: a key written but never read enters a full tier only
in place of a row that nobody reads either. Keys already stored are always updated in
place, so the tier never serves a vector older than the last write it saw.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from hotshelf.embeddings._frequency_sketch import FrequencySketch, KeyHashes
from hotshelf.embeddings._tier import (
    EmbeddingTier,
    FoundMask,
    Vectors,
    check_dim,
    check_keys,
    check_vectors,
    empty_result,
)
from hotshelf.errors import ValidationError

__all__ = ["LocalTier"]

_DEFAULT_SAMPLE = 8
# Keys recorded by reads and not yet counted; beyond this, reads go uncounted until
# the next write (only writes need the counts).
_MAX_PENDING = 65_536


def _stored_rows(index: dict[str, int], keys: Sequence[str]) -> npt.NDArray[np.intp]:
    """The rows of ``keys``, every one stored (else ``KeyError``): the lookups run in
    one C loop (``itemgetter``), ~2x faster than a comprehension of ``dict.get``."""
    if len(keys) == 1:
        return np.array([index[keys[0]]], dtype=np.intp)
    return np.array(itemgetter(*keys)(index), dtype=np.intp)


class LocalTier(EmbeddingTier):
    """At most ``capacity`` vectors in memory; TinyLFU admission, sampled-LFU eviction.

    Thread-safe: one lock guards the matrix and the index (the store refreshes the tier
    from its I/O threads while requests read it).
    """

    def __init__(
        self, dim: int, capacity: int, *, sample: int = _DEFAULT_SAMPLE, seed: int | None = None
    ) -> None:
        if capacity < 1 or sample < 1:
            raise ValidationError(f"capacity and sample must be positive, got {capacity}, {sample}")
        self._dim = check_dim(dim)
        self.capacity = capacity
        self._sample = sample
        self._matrix: Vectors = np.empty((capacity, dim), dtype=np.float32)
        self._matrix.fill(0.0)  # touch every page now, not in the first writes' page faults
        self._index: dict[str, int] = {}
        self._row_keys: list[str | None] = [None] * capacity
        self._row_hashes: KeyHashes = np.zeros(capacity, dtype=np.uint64)
        self._free: list[int] = []  # rows released by deletes
        self._next_row = 0  # rows at and past this one were never used
        self._sketch = FrequencySketch(capacity, seed=seed)
        # reads not yet counted in the sketch: hashes (full hits), keys (partial hits)
        self._pending: list[KeyHashes | Sequence[str]] = []
        self._pending_keys = 0
        self._count_lock = threading.Lock()  # one counting pass into the sketch at a time
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.evictions = 0
        self.rejections = 0

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self._index)

    def get_many(self, keys: Sequence[str], *, record: bool = True) -> tuple[Vectors, FoundMask]:
        """``EmbeddingTier.get_many``; ``record=False`` for a read already recorded (by
        ``get_all``), so the sketch counts each request once."""
        n = len(keys)
        if n == 0:
            return empty_result(0, self._dim)
        with self._lock:
            stored = self._gather_all(keys, record=record)
            if stored is not None:
                return stored, np.ones(n, dtype=np.bool_)
            if record:
                self._record(keys)
            index = self._index
            row_list = [index.get(key, -1) for key in keys]
            misses = row_list.count(-1)
            rows = np.array(row_list, dtype=np.intp)
            # row -1 reads the last row; those rows are zeroed below
            vectors = self._matrix[rows] if misses < n else None
        if vectors is None:
            return empty_result(n, self._dim)
        found = rows >= 0
        vectors[~found] = 0.0
        return vectors, found

    def reads_waiting(self) -> bool:
        """Whether enough reads wait to be counted that a refresh should count them now
        (a quarter of the read buffer): a store that skips refreshes of unchanged full
        hits asks this, so the sketch still sees the reads."""
        return self._pending_keys >= _MAX_PENDING // 4

    def get_all(self, keys: Sequence[str]) -> tuple[Vectors | None, int]:
        """The vectors of ``keys`` when every one is stored (else None, and nothing is
        gathered), and how many are stored. The read is recorded as ``get_many``'s is.

        For a caller that answers a partial hit from another tier anyway: it skips
        copying rows it would throw away.
        """
        with self._lock:
            stored = self._gather_all(keys, record=True)
            if stored is not None:
                return stored, len(keys)
            self._record(keys)
            return None, sum(key in self._index for key in keys)

    def _gather_all(self, keys: Sequence[str], *, record: bool) -> Vectors | None:
        """Under the lock: the vectors of ``keys`` if every one is stored (the read
        recorded by its rows' hashes, already at hand), else None (nothing recorded)."""
        try:
            rows = _stored_rows(self._index, keys)
        except KeyError:
            return None
        if record:
            self._record(self._row_hashes.take(rows))
        return self._matrix.take(rows, axis=0)

    def _record(self, read: KeyHashes | Sequence[str]) -> None:
        """Keep a read for the sketch (under the lock; dropped when the buffer is full)."""
        if self._pending_keys < _MAX_PENDING:
            self._pending.append(read)
            self._pending_keys += len(read)

    def put_many(self, keys: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Update stored keys in place; offer new ones to the admission policy, which
        may turn them away when the tier is full (see the module docstring)."""
        keys = check_keys(keys)
        matrix = check_vectors(keys, vectors, self._dim)
        self._count_reads()
        self._write(keys, matrix)

    def refresh(self, keys: Sequence[str], vectors: Vectors, found: FoundMask) -> None:
        """Take in another tier's answer for ``keys``: the found ones are written as by
        ``put_many`` (not checked again: that tier checked them), the others dropped.
        The waiting reads are counted first, as ``put_many`` does: admission needs
        them, and an unchanged full hit is refreshed only to have them counted."""
        self._count_reads()
        if found.all():
            if not self._unchanged(keys, vectors):
                self._write(list(keys), vectors)
            return
        hit = found.tolist()
        self._write([key for key, h in zip(keys, hit, strict=True) if h], vectors[found])
        self.delete_many([key for key, h in zip(keys, hit, strict=True) if not h])

    def delete_many(self, keys: Sequence[str]) -> int:
        deleted = 0
        with self._lock:
            for key in keys:
                row = self._index.pop(key, None)
                if row is not None:
                    self._row_keys[row] = None
                    self._free.append(row)
                    deleted += 1
        return deleted

    def close(self) -> None:
        """Drop every vector and release the matrix; the tier then stays empty."""
        with self._lock:
            self._index.clear()
            self._matrix = np.zeros((0, self._dim), dtype=np.float32)
            self._row_keys = []
            self._free = []
            self._pending = []
            self.capacity = self._next_row = self._pending_keys = 0

    # -- placement -------------------------------------------------------------

    def _unchanged(self, keys: Sequence[str], vectors: Vectors) -> bool:
        """Whether every key is stored with exactly ``vectors`` (the usual answer to a
        full hit: comparing costs a third of rewriting)."""
        with self._lock:
            rows = [self._index.get(key, -1) for key in keys]
            return -1 not in rows and np.array_equal(self._matrix[rows], vectors)

    def _write(self, keys: list[str], matrix: Vectors) -> None:
        if not keys:
            return
        last = {key: i for i, key in enumerate(keys)}
        if len(last) < len(keys):
            keys, matrix = list(last), matrix[list(last.values())]
        with self._lock:
            rows = self._place(keys)
            positions = list(rows)
            self._matrix[[rows[i] for i in positions]] = matrix[positions]

    def _count_reads(self) -> None:
        """Count the recorded reads into the sketch. Called without the tier's lock: it
        takes the buffer in one swap and counts outside, so reads never wait for it."""
        with self._lock:
            if not self._pending:
                return
            pending, self._pending, self._pending_keys = self._pending, [], 0
        hashes = [
            read if isinstance(read, np.ndarray) else FrequencySketch.hashes(read)
            for read in pending
        ]
        with self._count_lock:
            self._sketch.add(np.concatenate(hashes))

    def _place(self, keys: list[str]) -> dict[int, int]:
        """Rows for the keys that are stored (position -> row), with the index updated."""
        index = self._index
        rows: dict[int, int] = {}
        new: list[int] = []
        for i, key in enumerate(keys):
            row = index.get(key)
            if row is None:
                new.append(i)
            else:
                rows[i] = row
        if not new:
            return rows
        hashes = self._sketch.hashes([keys[i] for i in new])
        free = self._take_free(len(new))
        placed = new[: len(free)]
        self._index.update(zip([keys[i] for i in placed], free, strict=True))
        for i, row in zip(placed, free, strict=True):
            self._row_keys[row] = keys[i]
        self._row_hashes[free] = hashes[: len(free)]
        rows.update(zip(placed, free, strict=True))
        if len(free) < len(new):
            self._admit(new[len(free) :], keys, hashes[len(free) :], rows)
        return rows

    def _take_free(self, n: int) -> list[int]:
        """Up to ``n`` unused rows: freed ones first, then never used ones."""
        start = max(0, len(self._free) - n)
        taken = self._free[start:]
        del self._free[start:]
        fresh = min(n - len(taken), self.capacity - self._next_row)
        taken += range(self._next_row, self._next_row + fresh)
        self._next_row += fresh
        return taken

    def _assign(self, key: str, row: int, key_hash: np.uint64) -> None:
        self._index[key] = row
        self._row_keys[row] = key
        self._row_hashes[row] = key_hash

    def _admit(
        self, waiting: list[int], keys: list[str], hashes: KeyHashes, rows: dict[int, int]
    ) -> None:
        """The tier is full: each waiting key replaces the least frequent of ``sample``
        random rows if it was asked for more often, else it is turned away."""
        if self.capacity == 0:  # closed
            self.rejections += len(waiting)
            return
        m = len(waiting)
        candidate_freq = self._sketch.estimate(hashes)
        samples = self._rng.integers(0, self.capacity, size=(m, self._sample))
        sample_freq = self._sketch.estimate(self._row_hashes[samples.ravel()]).reshape(m, -1)
        pick = sample_freq.argmin(axis=1)
        victims = samples[np.arange(m), pick].tolist()
        admit = (candidate_freq > sample_freq[np.arange(m), pick]).tolist()
        taken = set(rows.values())  # rows this batch writes: never evicted by it
        for j, i in enumerate(waiting):
            victim = victims[j]
            if not admit[j] or victim in taken:
                self.rejections += 1
                continue
            evicted = self._row_keys[victim]
            if evicted is not None:
                del self._index[evicted]
                self.evictions += 1
            self._assign(keys[i], victim, hashes[j])
            rows[i] = victim
            taken.add(victim)
