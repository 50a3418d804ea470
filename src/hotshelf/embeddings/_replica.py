"""``EmbeddingReplica``: the server's embeddings, followed read-only from another process.

A recommend replica answers from the vectors the server's ``EmbeddingJob`` stored, and
must neither write under ``data_dir`` nor take the locks the server holds. So it reads
the job's manifest (written after the vectors it lists are in the store), reads those
items' vectors (``read_vectors`` for the memory-mapped store, plain ``MGET``\\ s for
Redis), and builds an index and a lookup table of its own, all in memory. A daemon
thread polls the manifest every ``embeddings.refresh_s`` and loads everything again
when it was replaced.

Each load builds a new immutable ``_Snapshot`` and swaps it in with one assignment:
a query reads the attribute once and answers from one load whole, never half of one
and half of the next. A load that fails keeps the old snapshot serving (and sets
``failure``); the next poll tries again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from hotshelf.embeddings._index import VectorIndex, open_index
from hotshelf.embeddings._job import _LOAD_CHUNK, MANIFEST_NAME, MANIFEST_VERSION, Manifest
from hotshelf.embeddings._mmap_tier import read_vectors
from hotshelf.embeddings._store import Fetch
from hotshelf.embeddings._tier import FoundMask, Vectors, empty_result
from hotshelf.errors import ConfigError
from hotshelf.monitoring import get_logger
from hotshelf.stream import ItemScore

if TYPE_CHECKING:
    from hotshelf.config import Config, EmbeddingsConfig
    from hotshelf.embeddings._redis_tier import RedisTier

__all__ = ["EmbeddingReplica"]

_logger = get_logger("hotshelf.embeddings")
_REDIS_READ_TIMEOUT_S = 5.0  # a bulk load in the background, not a request's read
_Stamp = tuple[int, int, int]  # the manifest's inode, modification time and size


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One load of the embeddings; never changed once built."""

    stamp: _Stamp
    offset: int
    rows: Mapping[str, int]  # item id -> row of ``vectors``
    vectors: Vectors  # read-only
    index: VectorIndex


def _stamp(stat: os.stat_result) -> _Stamp:
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _configured_dim(cfg: EmbeddingsConfig) -> int:
    """The length of the vectors the server's encoder (and photo fusion) writes."""
    from hotshelf.models import EMBEDDING_DIM, read_meta

    text = read_meta(Path(cfg.model_dir)).dim if cfg.model_dir else EMBEDDING_DIM
    fused = cfg.image_weight > 0 and cfg.image_root is not None
    return text + (cfg.image_dim if fused else 0)


class EmbeddingReplica:
    """The embeddings the server stored, answered from memory in this process; it
    writes nothing and takes no lock. Queries match ``EmbeddingService``'s."""

    def __init__(
        self, config: Config, *, dim: int | None = None, poll_s: float | None = None
    ) -> None:
        self.config = config
        self.poll_s = config.embeddings.refresh_s if poll_s is None else poll_s
        self.generation = 0  # bumped by every load (caches key on it)
        self.failure: str | None = None  # why the last load failed; None once one works
        self._dim = dim
        self._directory = config.data_path / "embeddings"
        self._snapshot: _Snapshot | None = None
        self._redis: RedisTier | None = None
        self._load_lock = threading.Lock()  # one load at a time: the watcher's or a caller's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Load what the server has stored (nothing yet is fine: it is picked up when it
        comes), then follow its changes on a daemon thread. Raises if the first load
        fails."""
        cfg = self.config.embeddings
        try:
            if cfg.backend == "redis":
                from hotshelf.embeddings._redis_tier import RedisTier

                self._dim = dim = self._dim or _configured_dim(cfg)
                self._redis = RedisTier(cfg.redis_url, dim, prefix=f"{cfg.redis_prefix}:",
                                        read_timeout_s=_REDIS_READ_TIMEOUT_S)  # fmt: skip
            self.refresh()
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(
            target=self._watch, name="hotshelf-embeddings-replica", daemon=True
        )
        self._thread.start()

    def refresh(self) -> bool:
        """Load again if the manifest changed since the last load; answers whether it did."""
        with self._load_lock:
            loaded = self._refresh()
        if loaded:
            _logger.info("embeddings.replica_loaded", items=len(self), offset=self.offset,
                         generation=self.generation)  # fmt: skip
        return loaded

    def _refresh(self) -> bool:
        path = self._directory / MANIFEST_NAME
        try:
            with path.open("rb") as f:
                stamp = _stamp(os.fstat(f.fileno()))
                current = self._snapshot
                if current is not None and current.stamp == stamp:
                    return False
                data = f.read()
        except FileNotFoundError:  # no job has run yet
            return False
        manifest = msgspec.msgpack.decode(data, type=Manifest)
        if manifest.version != MANIFEST_VERSION:
            raise ConfigError(
                f"{path} is manifest version {manifest.version}, this build reads"
                f" {MANIFEST_VERSION}: the server and the replica differ"
            )
        self._snapshot = self._load(stamp, manifest)
        self.generation += 1
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                _logger.exception("embeddings.replica_load_failed")
            else:
                self.failure = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60.0)
        if self._redis is not None:
            self._redis.close()

    # -- loading ------------------------------------------------------------------------

    def _load(self, stamp: _Stamp, manifest: Manifest) -> _Snapshot:
        keys = list(manifest.fingerprints)
        vectors, found = self._read(keys)
        present = [key for key, ok in zip(keys, found, strict=True) if ok]
        if len(present) < len(keys):  # removed since the manifest was written
            _logger.info("embeddings.replica_vectors_missing", missing=len(keys) - len(present))
        matrix = vectors[found]
        matrix.flags.writeable = False
        index = open_index(self.config.embeddings, matrix.shape[1], len(present))
        index.upsert(present, matrix)
        rows = {key: row for row, key in enumerate(present)}
        return _Snapshot(stamp, manifest.offset, rows, matrix, index)

    def _read(self, keys: list[str]) -> tuple[Vectors, FoundMask]:
        if self._redis is not None:
            return self._read_redis(self._redis, keys)
        dim, vectors, found = read_vectors(self._directory / "vectors", keys)
        if self._dim is not None and dim != self._dim:
            raise ConfigError(f"the embedding store holds vectors of dim {dim}, not {self._dim}")
        return vectors, found

    @staticmethod
    def _read_redis(tier: RedisTier, keys: list[str]) -> tuple[Vectors, FoundMask]:
        parts = [tier.get_many(keys[i : i + _LOAD_CHUNK]) for i in range(0, len(keys), _LOAD_CHUNK)]
        if not parts:
            return empty_result(0, tier.dim)
        return np.concatenate([v for v, _ in parts]), np.concatenate([f for _, f in parts])

    # -- queries ------------------------------------------------------------------------

    @property
    def store(self) -> object | None:
        """What queries answer from: None until the first load, then truthy (as
        ``EmbeddingService.store`` is once started)."""
        return self._snapshot

    @property
    def dim(self) -> int:
        """The vectors' length (0 while nothing is loaded and none was given)."""
        snapshot = self._snapshot
        return snapshot.vectors.shape[1] if snapshot is not None else self._dim or 0

    @property
    def offset(self) -> int:
        """The catalog offset the loaded embeddings reflect."""
        snapshot = self._snapshot
        return 0 if snapshot is None else snapshot.offset

    def __len__(self) -> int:
        snapshot = self._snapshot
        return 0 if snapshot is None else len(snapshot.rows)

    def lookup(self, item_ids: Sequence[str], *, wait: bool = True) -> Fetch:
        """The items' vectors; ids without one are not found. Everything is in memory,
        so ``wait`` changes nothing."""
        snapshot, n = self._snapshot, len(item_ids)
        vectors, found = empty_result(n, self.dim)
        if snapshot is not None and n:
            get = snapshot.rows.get
            rows = np.fromiter((get(item_id, -1) for item_id in item_ids), np.intp, count=n)
            found = rows >= 0
            vectors[found] = snapshot.vectors[rows[found]]
        return Fetch(vectors, found, found, np.zeros(n, dtype=np.bool_), degraded=False)

    def nearest(self, vector: np.ndarray, k: int, exclude: Collection[str] = ()) -> list[ItemScore]:
        """The ``k`` items nearest a unit ``vector``."""
        snapshot = self._snapshot
        return [] if snapshot is None else snapshot.index.search(vector, k, exclude=exclude)

    def nearest_many(
        self, vectors: np.ndarray, k: int, *, excludes: Sequence[Collection[str]]
    ) -> list[list[ItemScore]]:
        """``nearest`` for each row of ``vectors``, in one pass over the index."""
        snapshot = self._snapshot
        if snapshot is None:
            return [[] for _ in range(len(vectors))]
        return snapshot.index.search_many(vectors, k, excludes=excludes)
