"""``RedisTier``: embeddings as raw float32 bytes, one Redis string per key.

Layout: ``<prefix><key>`` holds ``vector.astype("<f4").tobytes()`` (``4 x dim``
bytes, little-endian). ``get_many`` is exactly one ``MGET`` (so on Redis Cluster one
request's keys must share a slot: put a hash tag in the prefix); ``put_many`` one
``MSET`` per 1,000 keys in one pipeline. A value of the wrong length (written with
another ``dim``, or by something else) is reported as not found and counted in
``bad_values``, never decoded into garbage.

Two connection pools: reads with a short socket timeout (a read that takes longer is
useless to a request and only holds a slot of the store's bounded pool), writes with
a long one (bulk loads send megabytes). Both retry once on a connection error only (a
pooled connection may be stale after a server restart); every command is idempotent.

Reads skip redis-py's client layer: each thread keeps one connection of the read pool
and sends ``MGET`` on it directly (hiredis packs and parses, as in the client). The
client's per-command work (pool checkout and return, retry wrapper, response
callbacks) cost ~60 µs of a ~260 µs 50-key MGET, a quarter of the read. A connection
that errs or times out is disconnected (its reply stream is no longer in step) and
reconnects on its next use.

Errors. redis-py exceptions are translated by the log's ``map_redis_errors``: a server
that is down, slow or refusing (loading, read-only, out of memory) is
:class:`~hotshelf.errors.UnavailableError` (503), anything else a
:class:`~hotshelf.errors.HotshelfError`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hotshelf.embeddings._tier import (
    EmbeddingTier,
    FoundMask,
    Vectors,
    check_dim,
    check_keys,
    check_vectors,
    empty_result,
)
from hotshelf.errors import HotshelfError
from hotshelf.log._redis_log import map_redis_errors

__all__ = ["RedisTier"]

_WIRE = np.dtype("<f4")
_CHUNK = 1000
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _client(url: str, timeout_s: float, connect_timeout_s: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


class RedisTier(EmbeddingTier):
    """Vectors in Redis under ``prefix``; one ``MGET`` per read."""

    def __init__(
        self,
        url: str,
        dim: int,
        *,
        prefix: str = "hotshelf:emb:",
        read_timeout_s: float = 0.25,
        write_timeout_s: float = 10.0,
        connect_timeout_s: float = 0.25,
    ) -> None:
        self._dim = check_dim(dim)
        self.prefix = prefix
        self._row_bytes = dim * _WIRE.itemsize
        self._reader = _client(url, read_timeout_s, connect_timeout_s)
        self._writer = _client(url, write_timeout_s, connect_timeout_s)
        self._local = threading.local()  # .connection: this thread's read connection
        self._bad_lock = threading.Lock()
        self._bad_values = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def bad_values(self) -> int:
        """Values read that had the wrong length for ``dim`` (reported as not found)."""
        return self._bad_values

    def get_many(self, keys: Sequence[str]) -> tuple[Vectors, FoundMask]:
        if not keys:
            return empty_result(0, self._dim)
        prefix = self.prefix
        with map_redis_errors("embedding read", HotshelfError):
            values = self._mget([prefix + key for key in keys])
        return self._decode(values)

    def _mget(self, names: list[str]) -> list[bytes | None]:
        try:
            return self._mget_once(names)
        except redis.ConnectionError:
            return self._mget_once(names)  # the connection was stale (a server restart)

    def _mget_once(self, names: list[str]) -> list[bytes | None]:
        connection = self._connection()
        try:
            connection.send_command("MGET", *names)  # type: ignore[no-untyped-call]
            return cast("list[bytes | None]", connection.read_response())
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()  # type: ignore[no-untyped-call]  # replies out of step
            raise

    def _connection(self) -> redis.connection.AbstractConnection:
        connection: redis.connection.AbstractConnection | None = getattr(
            self._local, "connection", None
        )
        if connection is None:
            connection = self._reader.connection_pool.get_connection()
            self._local.connection = connection
        return connection

    def _decode(self, values: list[bytes | None]) -> tuple[Vectors, FoundMask]:
        n, size = len(values), self._row_bytes
        if None not in values:
            joined = b"".join(values)  # type: ignore[arg-type]
            if len(joined) == n * size and set(map(len, values)) == {size}:  # type: ignore[arg-type]
                # the common case: one join, one read-only view, no zero fill
                block = np.frombuffer(joined, dtype=_WIRE)
                return block.reshape(n, self._dim), np.ones(n, dtype=np.bool_)
        missing = values.count(None)
        good = [i for i, value in enumerate(values) if value is not None and len(value) == size]
        bad = n - len(good) - missing
        if bad:
            with self._bad_lock:
                self._bad_values += bad
        vectors, found = empty_result(n, self._dim)
        if good:
            joined = b"".join([values[i] or b"" for i in good])
            vectors[good] = np.frombuffer(joined, dtype=_WIRE).reshape(len(good), self._dim)
            found[good] = True
        return vectors, found

    def put_many(self, keys: Sequence[str], vectors: npt.ArrayLike) -> None:
        keys = check_keys(keys)
        matrix = check_vectors(keys, vectors, self._dim).astype(_WIRE, copy=False)
        if not keys:
            return
        prefix = self.prefix
        mapping = {prefix + key: row.tobytes() for key, row in zip(keys, matrix, strict=True)}
        items = list(mapping.items())
        with map_redis_errors("embedding write", HotshelfError):
            pipe = self._writer.pipeline(transaction=False)
            for start in range(0, len(items), _CHUNK):
                pipe.mset(dict(items[start : start + _CHUNK]))
            pipe.execute()

    def delete_many(self, keys: Sequence[str]) -> int:
        names = list(dict.fromkeys(self.prefix + key for key in keys))
        if not names:
            return 0
        with map_redis_errors("embedding delete", HotshelfError):
            pipe = self._writer.pipeline(transaction=False)
            for start in range(0, len(names), _CHUNK):
                pipe.delete(*names[start : start + _CHUNK])
            return sum(pipe.execute())

    def __len__(self) -> int:
        """Keys under the prefix. A ``SCAN`` of the whole keyspace: for tests and tools,
        never for a request path."""
        pattern = self.prefix.translate(_GLOB_SPECIAL) + "*"
        with map_redis_errors("embedding count", HotshelfError):
            return sum(1 for _ in self._writer.scan_iter(match=pattern, count=1000))

    def close(self) -> None:
        self._reader.connection_pool.disconnect()  # the threads' read connections too
        self._reader.close()
        self._writer.close()
