"""``RedisSnapshotStore``: a processor's latest snapshot kept in Redis, for readers elsewhere.

When partitions run as separate processes (``hotshelf stream run --partition I/N``),
the service reads their state from Redis (``RemoteState``). Each partition owns two
keys that share the hash tag ``{prefix:stream:p<i>of<n>}`` (one Redis Cluster slot,
so one transaction can write both):

* ``{...}:snapshot``  the snapshot's bytes, exactly as the file store would hold them;
* ``{...}:meta``      hash: ``seq`` (bumped at every write) and ``ms`` (Redis's clock
  at the write, so ages are measured on one clock whatever the machines' skew).

A write is one MULTI/EXEC of the SET and the stamp, so a reader sees the old
snapshot with its ``seq`` or the new one with its, never a mix; a reader polls
``meta`` alone (a few bytes) and fetches the snapshot only when ``seq`` changed.
Durability is what Redis's AOF setting gives, as for ``RedisStreamLog``; a lost
snapshot costs a rebuild from the log, never wrong state.

Errors are translated at this boundary by ``hotshelf.log``'s ``map_redis_errors``:
an unreachable or unwilling server is ``UnavailableError`` (503).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, cast

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hotshelf.log._redis_log import SOCKET_TIMEOUT_S, map_redis_errors
from hotshelf.stream._partition import Partition, check_partition
from hotshelf.stream._snapshot import encode_snapshot

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hotshelf.config import LogConfig

__all__ = ["RedisSnapshotStore", "SnapshotVersion", "redis_client"]

_CONNECT_TIMEOUT_S = 2.0

# KEYS: meta. Bumps seq and stamps the server's time; runs inside the write's MULTI.
_STAMP = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'ms', string.format('%.0f', ms))
return seq
"""


class SnapshotVersion(NamedTuple):
    """Which snapshot a key holds: ``seq`` 0 when none was ever written.

    Compare whole versions, not ``seq`` alone: a flushed Redis counts from 1 again.
    """

    seq: int
    written_ms: int  # Redis's clock at the write (0 when there is none)

    @classmethod
    def from_reply(cls, raw: Any) -> SnapshotVersion:
        """The version in an ``HMGET meta seq ms`` reply."""
        seq, ms = raw
        return cls(int(seq or 0), int(ms or 0))


def redis_client(config: LogConfig) -> redis.Redis:
    """A client for ``config.redis_url`` with the log backend's timeouts and retry."""
    return redis.Redis.from_url(
        config.redis_url,
        protocol=2,  # the reply shapes RedisStreamLog's client gets
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        # Every command here is idempotent but the write's seq bump; a retry after a
        # dropped connection at worst bumps seq twice, which readers only see as "changed".
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


class RedisSnapshotStore:
    """One partition's latest snapshot in Redis; see the module docstring."""

    def __init__(
        self,
        config: LogConfig,
        partition: tuple[int, int] = (0, 1),
        *,
        client: redis.Redis | None = None,
    ) -> None:
        self.partition: Partition = check_partition(partition)
        tag = f"{{{config.redis_prefix}:stream:{self.partition.name}}}"
        self.data_key = f"{tag}:snapshot"
        self.meta_key = f"{tag}:meta"
        self._owns_client = client is None
        self.client = redis_client(config) if client is None else client
        self._stamp = self.client.register_script(_STAMP)

    @property
    def location(self) -> str:
        return f"redis key {self.data_key}"

    def write(self, data: bytes) -> None:
        """Replace the snapshot and bump its sequence, in one transaction."""
        with map_redis_errors("snapshot write"):
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self.data_key, data)
            self._stamp(keys=[self.meta_key], client=pipe)
            pipe.execute()

    def save(self, settings: str, lanes: Mapping[str, msgspec.Raw]) -> int:
        """``write`` of the snapshot of ``lanes``: one key holds it whole, so readers
        fetch it in one GET."""
        data = encode_snapshot(settings, dict(lanes))
        self.write(data)
        return len(data)

    def read(self) -> bytes | None:
        """The latest snapshot's bytes, or None when there is none."""
        with map_redis_errors("snapshot read"):
            # the client does not decode replies: bytes, or None for a missing key
            return cast("bytes | None", self.client.get(self.data_key))

    def version(self) -> SnapshotVersion:
        """The sequence and write time of the snapshot held now: a few bytes to fetch."""
        with map_redis_errors("snapshot version"):
            return SnapshotVersion.from_reply(self.client.hmget(self.meta_key, ["seq", "ms"]))

    def read_versioned(self) -> tuple[SnapshotVersion, bytes | None]:
        """The snapshot and its version, read together (one transaction)."""
        with map_redis_errors("snapshot read"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hmget(self.meta_key, ["seq", "ms"])
            pipe.get(self.data_key)
            meta, data = pipe.execute()
        return SnapshotVersion.from_reply(meta), data

    def clear(self) -> None:
        """Delete the snapshot (the next start rebuilds from the log); seq still moves on."""
        with map_redis_errors("snapshot delete"):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.data_key)
            self._stamp(keys=[self.meta_key], client=pipe)
            pipe.execute()

    def close(self) -> None:
        """Release the connections, unless the client was handed in."""
        if self._owns_client:
            self.client.close()
