"""Stream snapshots: the state together with the log offsets it reflects, written atomically.

A snapshot is the msgpack of ``Snapshot``: version, a fingerprint of the settings
the state depends on and, per lane (``_lane``), the next offset to process per topic,
the bot filter's state, the lane's item -> category map and its stream state. Lanes
restore independently: a lane missing from a snapshot starts from offset 0.

Maps are written in their dicts' insertion order, not sorted. That order is itself
a function of the updates applied (the same inserts and deletes give the same order),
and a restore rebuilds every dict in the order it was written, so a restored state
keeps the order of the one that was saved. The same history therefore gives the same
bytes whichever way it was reached (a replay from offset 0, restarts, redeliveries),
without sorting hundreds of thousands of keys at every snapshot.

The file is replaced atomically (temp file, fsync, rename, fsync of the directory),
so a crash leaves the previous snapshot or the new one, never a torn one. Where the
bytes live is a ``SnapshotStorage``: this file (``SnapshotStore``) by default, or a
Redis key (``_redis_state.RedisSnapshotStore``) when partitions run as separate
processes and readers elsewhere need their state.

A partitioned processor (``_partition``) puts its partition into the settings
fingerprint, so a snapshot is never restored under another partitioning.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

import msgspec

from hotshelf._files import write_atomically
from hotshelf.config import Config

__all__ = [
    "SNAPSHOT_VERSION",
    "LaneSnapshot",
    "Snapshot",
    "SnapshotStorage",
    "SnapshotStore",
    "decode_snapshot",
    "encode_lane",
    "encode_snapshot",
    "settings_fingerprint",
]

SNAPSHOT_VERSION = 3
# Settings that only pace the processor or shape query answers: a snapshot taken
# under other values of these still fits.
_RUNTIME_SETTINGS = frozenset(
    {
        "top_k",
        "snapshot_interval_s",
        "snapshot_every_records",
        "min_support",
        "trend_smoothing",
        "catalog_grace_ms",
        "batch_min_share",
        "freshness_samples",
        # whether the service runs a processor, how many partitions readers expect
        # and how often they refresh: none changes what a processor derives
        "serve",
        "partitions",
        "remote_refresh_s",
    }
)


class LaneSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One lane's part of a snapshot."""

    offsets: dict[str, int]
    bots: Any
    categories: dict[str, list[str]]
    state: Any


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What a snapshot file holds."""

    version: int
    settings: str
    lanes: dict[str, LaneSnapshot]


class _EncodedSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """``Snapshot`` with its lanes already encoded: the same fields in the same order,
    so the same bytes."""

    version: int
    settings: str
    lanes: dict[str, msgspec.Raw]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)
# The lane parts whose tables are encoded one by one (see encode_lane).
_IN_PIECES = frozenset({"bots", "state"})


def encode_lane(parts: dict[str, Any]) -> msgspec.Raw:
    """One lane's snapshot (``LaneSnapshot(**parts)``), encoded piece by piece.

    Each table of the lane's stream state and bot filter is its own encoder call, and
    the pieces are spliced in as ``msgspec.Raw``: the bytes are exactly those of
    encoding the lane in one call, but no single C call holds the GIL for long, so a
    server's requests get their turn between pieces (a 200,000-event lane: ~18 ms as
    one call, at most ~6 ms per piece).
    """
    pieces = {
        name: _in_pieces(value) if name in _IN_PIECES else value for name, value in parts.items()
    }
    return msgspec.Raw(_encoder.encode(LaneSnapshot(**pieces)))


def _in_pieces(value: Any) -> Any:
    """A dict with each value encoded on its own (anything else as it is: no bot filter)."""
    if not isinstance(value, dict):
        return value
    return {key: msgspec.Raw(_encoder.encode(item)) for key, item in value.items()}


def encode_snapshot(settings: str, lanes: dict[str, msgspec.Raw]) -> bytes:
    """The snapshot of lanes encoded by ``encode_lane``."""
    snapshot = _EncodedSnapshot(version=SNAPSHOT_VERSION, settings=settings, lanes=lanes)
    return _encoder.encode(snapshot)


def decode_snapshot(data: bytes) -> Snapshot:
    """Raises ``msgspec.DecodeError`` for bytes that are not a snapshot of this version."""
    version = msgspec.msgpack.decode(data, type=_Versioned).version
    if version != SNAPSHOT_VERSION:
        raise msgspec.DecodeError(
            f"snapshot version {version}, this build reads {SNAPSHOT_VERSION}"
        )
    return _decoder.decode(data)


class _Versioned(msgspec.Struct):
    """Any snapshot's first field, read before the rest (whose layout may differ)."""

    version: int


def settings_fingerprint(
    config: Config, bots: bool, partition: tuple[int, int] | None = None
) -> str:
    """A short hash of the settings that the saved state depends on.

    ``partition`` is (index, count) for a partitioned processor; unpartitioned
    processors hash without it, so their fingerprint does not change.
    """
    stream = {
        k: v for k, v in msgspec.structs.asdict(config.stream).items() if k not in _RUNTIME_SETTINGS
    }
    filtered = {"bots": config.bots, "salt": config.events.ip_hash_salt} if bots else None
    settings: dict[str, Any] = {"stream": stream, "filter": filtered}
    if partition is not None:
        settings["partition"] = list(partition)
    blob = msgspec.json.encode(settings, order="deterministic")
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


class SnapshotStorage(Protocol):
    """Where a processor keeps its latest snapshot: a file, or a Redis key."""

    @property
    def location(self) -> str:
        """Where the snapshot lives, for log messages."""
        ...

    def read(self) -> bytes | None:
        """The latest snapshot's bytes, or None when there is none."""
        ...

    def write(self, data: bytes) -> None:
        """Replace the snapshot with ``data`` atomically: readers see the old or the new."""
        ...


class SnapshotStore:
    """The latest snapshot in ``directory/snapshot.msgpack``."""

    NAME = "snapshot.msgpack"

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / self.NAME
        self._fsync = fsync

    @property
    def location(self) -> str:
        return str(self.path)

    def write(self, data: bytes) -> None:
        """Replace the snapshot with ``data``, atomically and durably."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, data, fsync=self._fsync)

    def read(self) -> bytes | None:
        """The latest snapshot's bytes, or None when there is none."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
