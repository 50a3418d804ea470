"""Nearest-neighbour search over item embeddings: exact, or HNSW from usearch.

``VectorIndex`` is the interface; ``ExactIndex`` (one matrix product, every score
exact) serves small catalogs and ``HnswIndex`` (hnswlib's HNSW graph) large ones.
``open_index`` picks by configuration: "auto" takes the exact index up to
``embeddings.exact_max_items`` items and HNSW past that.

Why hnswlib: in our comparison on real product embeddings (``python -m
benchmarks.bench_embeddings --only ann``, same M / ef settings for all) it answered
single queries fastest with the highest recall; faiss came close but cannot remove a
vector from an HNSW graph (a catalog changes every day: an edited title would mean
rebuilding the graph), and usearch answered 2-4x slower per query and crashed the
process when onnxruntime was loaded after it had been used. hnswlib updates and
deletes in place. Vectors are L2-normalized, so inner product is cosine similarity.

Both indexes are safe to share between threads (one lock): the service's refresher
updates them while requests search.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from hotshelf.errors import ValidationError
from hotshelf.stream import ItemScore

if TYPE_CHECKING:
    from hotshelf.config import EmbeddingsConfig

__all__ = ["ExactIndex", "HnswIndex", "VectorIndex", "open_index"]

_INITIAL_ROWS = 1024


def _check(vectors: np.ndarray, keys: Sequence[str], dim: int) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape != (len(keys), dim):
        raise ValidationError(
            f"expected {len(keys)} vectors of dimension {dim}, got shape {matrix.shape}"
        )
    return matrix


def _last_wins(keys: Sequence[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    """One row per key, the last given (a batch may update an item twice)."""
    rows = {key: row for row, key in enumerate(keys)}
    if len(rows) == len(keys):
        return list(keys), matrix
    return list(rows), matrix[list(rows.values())]


class VectorIndex(abc.ABC):
    """Items' vectors, searchable by inner product (cosine for unit vectors)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.Lock()

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __contains__(self, key: object) -> bool: ...

    @abc.abstractmethod
    def upsert(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Add the items, or replace the vectors of those already in."""

    @abc.abstractmethod
    def remove(self, keys: Iterable[str]) -> int:
        """Drop the items; answers how many were in."""

    @abc.abstractmethod
    def _search_many(self, queries: np.ndarray, count: int) -> list[list[tuple[str, float]]]:
        """Up to ``count`` nearest items to each row of ``queries``, best first (called
        under the lock)."""

    def search(
        self, query: np.ndarray, k: int, *, exclude: Collection[str] = ()
    ) -> list[ItemScore]:
        """The ``k`` items nearest ``query`` (a unit vector), leaving out ``exclude``."""
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise ValidationError(f"query vector has {vector.size} values, expected {self.dim}")
        return self.search_many(vector[None, :], k, excludes=[exclude])[0]

    def search_many(
        self, queries: np.ndarray, k: int, *, excludes: Sequence[Collection[str]]
    ) -> list[list[ItemScore]]:
        """``search`` for each row of ``queries`` (unit vectors), leaving ``excludes[i]``
        out of row i's answer: one pass over the index for all of them where it can
        (the exact index reads its matrix once instead of once per query)."""
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValidationError(
                f"query vectors of shape {matrix.shape}, expected (n, {self.dim})"
            )
        if len(excludes) != len(matrix):
            raise ValidationError(f"{len(excludes)} exclusion sets for {len(matrix)} queries")
        if k < 1:
            raise ValidationError("k must be at least 1")
        if not len(matrix):
            return []
        widest = max(len(exclude) for exclude in excludes)
        with self._lock:
            found = self._search_many(matrix, min(k + widest, len(self)))
        return [
            [ItemScore(key, score) for key, score in rows if key not in exclude][:k]
            for rows, exclude in zip(found, excludes, strict=True)
        ]


class ExactIndex(VectorIndex):
    """Every item's score by one matrix product: exact, and fast enough for small catalogs.

    Rows live in one growing float32 matrix; a removal moves the last row into the hole,
    so the matrix stays dense and a search never skips dead rows.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self._matrix = np.zeros((_INITIAL_ROWS, dim), dtype=np.float32)
        self._rows: dict[str, int] = {}
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def upsert(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        keys, matrix = _last_wins(keys, _check(vectors, keys, self.dim))
        with self._lock:
            new = [key for key in keys if key not in self._rows]
            self._grow(len(self._keys) + len(new))
            for key in new:
                self._rows[key] = len(self._keys)
                self._keys.append(key)
            self._matrix[[self._rows[key] for key in keys]] = matrix

    def _grow(self, rows: int) -> None:
        if rows <= len(self._matrix):
            return
        grown = np.zeros((max(rows, 2 * len(self._matrix)), self.dim), dtype=np.float32)
        grown[: len(self._keys)] = self._matrix[: len(self._keys)]
        self._matrix = grown

    def remove(self, keys: Iterable[str]) -> int:
        removed = 0
        with self._lock:
            for key in keys:
                row = self._rows.pop(key, None)
                if row is None:
                    continue
                last = self._keys.pop()
                if last != key:  # move the last row into the hole
                    self._matrix[row] = self._matrix[len(self._keys)]
                    self._keys[row] = last
                    self._rows[last] = row
                removed += 1
        return removed

    def _search_many(self, queries: np.ndarray, count: int) -> list[list[tuple[str, float]]]:
        if count <= 0:
            return [[] for _ in queries]
        all_scores = queries @ self._matrix[: len(self._keys)].T  # one pass over the matrix
        return [self._best(scores, count) for scores in all_scores]

    def _best(self, scores: np.ndarray, count: int) -> list[tuple[str, float]]:
        if count < len(scores):
            top = np.argpartition(-scores, count - 1)[:count]
        else:
            top = np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]  # best first; ties by row, deterministic
        return [(self._keys[row], float(scores[row])) for row in top]


class HnswIndex(VectorIndex):
    """hnswlib's HNSW graph: approximate, logarithmic search for large catalogs.

    hnswlib labels are integers: each item gets a label on first insert and keeps it
    while it lives; adding a live label again moves its vector in place. A removal
    marks the label deleted, and the next new item takes its slot
    (``allow_replace_deleted``), so churn does not grow the graph.
    """

    def __init__(
        self, dim: int, *, connectivity: int = 16, expansion_add: int = 128,
        expansion_search: int = 64, threads: int = 1, seed: int = 100,
    ) -> None:  # fmt: skip
        import hnswlib

        super().__init__(dim)
        self._index = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(
            max_elements=_INITIAL_ROWS, ef_construction=expansion_add, M=connectivity,
            random_seed=seed, allow_replace_deleted=True,
        )  # fmt: skip
        self._ef = expansion_search
        self._index.set_ef(expansion_search)
        self._threads = threads
        self._labels: dict[str, int] = {}
        self._keys: dict[int, str] = {}
        self._next_label = 0

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, key: object) -> bool:
        return key in self._labels

    def upsert(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        keys, matrix = _last_wins(keys, _check(vectors, keys, self.dim))
        if not keys:
            return
        with self._lock:
            new = sum(1 for key in keys if key not in self._labels)
            needed = self._index.element_count + new
            if needed > self._index.max_elements:
                self._index.resize_index(max(needed, 2 * self._index.max_elements))
            labels = np.fromiter((self._label(key) for key in keys), np.int64, len(keys))
            self._index.add_items(matrix, labels, num_threads=self._threads, replace_deleted=True)

    def _label(self, key: str) -> int:
        label = self._labels.get(key)
        if label is None:
            label = self._labels[key] = self._next_label
            self._keys[label] = key
            self._next_label += 1
        return label

    def remove(self, keys: Iterable[str]) -> int:
        with self._lock:
            labels = [self._labels.pop(key) for key in set(keys) if key in self._labels]
            for label in labels:
                del self._keys[label]
                self._index.mark_deleted(label)
        return len(labels)

    def _search_many(self, queries: np.ndarray, count: int) -> list[list[tuple[str, float]]]:
        if count <= 0:
            return [[] for _ in queries]
        # ef below k would make hnswlib refuse the query
        self._index.set_ef(max(self._ef, count))
        labels, distances = self._index.knn_query(queries, k=count, num_threads=1)
        # hnswlib's "ip" distance is 1 - inner product
        return [
            [(self._keys[int(label)], 1.0 - float(distance))
             for label, distance in zip(row_labels, row_distances, strict=True)]
            for row_labels, row_distances in zip(labels, distances, strict=True)
        ]  # fmt: skip


def open_index(config: EmbeddingsConfig, dim: int, items: int) -> VectorIndex:
    """The index ``config`` asks for, for a catalog of about ``items`` items."""
    kind = config.index
    if kind == "auto":
        kind = "exact" if items <= config.exact_max_items else "hnsw"
    if kind == "exact":
        return ExactIndex(dim)
    return HnswIndex(
        dim,
        connectivity=config.hnsw_connectivity,
        expansion_add=config.hnsw_expansion_add,
        expansion_search=config.hnsw_expansion_search,
        threads=config.threads or -1,  # hnswlib: -1 = every core
    )
