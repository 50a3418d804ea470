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

Where the bytes live is a ``SnapshotStorage``: files (``SnapshotStore``) by default,
or a Redis key (``_redis_state.RedisSnapshotStore``) when partitions run as separate
processes and readers elsewhere need their state. Either way a crash leaves the
previous snapshot or the new one, never a torn one.

``SnapshotStore`` keeps each lane in a file of its own and rewrites only the lanes
whose bytes changed. A bulk import's lane is typically most of the state and changes
only while an import runs; rewriting it with every snapshot of the live lane (12 MB
every 5 s after a 200,000-event import) cost the server's requests a stall of several
ms each time, in the copy into one buffer and in the kernel's copy to the page cache.
A lane file is written under a new name and made durable first; then the manifest
(``snapshot.msgpack``: version, settings, and per lane its file, size and BLAKE2b
digest) replaces the old one atomically (temp file, fsync, rename, fsync of the
directory); files no manifest names any more are deleted after. ``read`` checks every
lane file against the manifest and gives back the bytes of the whole ``Snapshot``,
exactly as one file would hold them.

A partitioned processor (``_partition``) puts its partition into the settings
fingerprint, so a snapshot is never restored under another partitioning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import msgspec

from hotshelf._files import write_atomically
from hotshelf.config import Config

__all__ = [
    "SNAPSHOT_VERSION",
    "LaneSnapshot",
    "Snapshot",
    "SnapshotDamagedError",
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


class SnapshotDamagedError(ValueError):
    """A stored snapshot that cannot be read whole: a processor rebuilds from the log."""


class SnapshotStorage(Protocol):
    """Where a processor keeps its latest snapshot: files, or a Redis key."""

    @property
    def location(self) -> str:
        """Where the snapshot lives, for log messages."""
        ...

    def read(self) -> bytes | None:
        """The latest snapshot's bytes, or None when there is none; ``SnapshotDamagedError``
        when it is there but not whole."""
        ...

    def save(self, settings: str, lanes: Mapping[str, msgspec.Raw]) -> int:
        """Replace the snapshot with the one of ``lanes`` (each from ``encode_lane``),
        atomically; returns the snapshot's size in bytes."""
        ...


class _LaneFile(msgspec.Struct, frozen=True):
    """Where a lane's bytes are, and what they must be."""

    file: str
    size: int
    digest: str


class _Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``snapshot.msgpack`` of a snapshot kept in lane files (a whole snapshot has
    ``lanes`` instead of ``files``, so it never decodes as one)."""

    version: int
    settings: str
    files: dict[str, _LaneFile]
    seq: int


_manifest_decoder = msgspec.msgpack.Decoder(_Manifest)


def _digest(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class SnapshotStore:
    """The latest snapshot in ``directory``: the manifest ``snapshot.msgpack`` and one
    ``snapshot-<seq>.<lane>.msgpack`` per lane (see the module docstring), or a whole
    snapshot in ``snapshot.msgpack`` alone (``write``, and snapshots of earlier
    releases)."""

    NAME = "snapshot.msgpack"
    _PREFIX = "snapshot-"

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / self.NAME
        self._fsync = fsync
        # per lane, the bytes object last saved and its entry: a lane whose encoded
        # bytes are the same object is not even hashed again
        self._saved: dict[str, tuple[msgspec.Raw, _LaneFile]] = {}

    @property
    def location(self) -> str:
        return str(self.path)

    def write(self, data: bytes) -> None:
        """Replace the snapshot with ``data``, a whole one, atomically and durably."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, data, fsync=self._fsync)
        self._saved.clear()
        self._remove_unnamed(set())

    def save(self, settings: str, lanes: Mapping[str, msgspec.Raw]) -> int:
        """Write the lanes that changed, then the manifest; returns the snapshot's size."""
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self._manifest()
        kept = current.files if current is not None else {}
        seq = current.seq + 1 if current is not None else 1
        files: dict[str, _LaneFile] = {}
        for name, raw in lanes.items():
            entry = self._unchanged(name, raw, kept.get(name))
            if entry is None:
                entry = self._write_lane(seq, name, raw)
            files[name] = entry
            self._saved[name] = (raw, entry)
        manifest = _Manifest(version=SNAPSHOT_VERSION, settings=settings, files=files, seq=seq)
        write_atomically(self.path, _encoder.encode(manifest), fsync=self._fsync)
        self._remove_unnamed({entry.file for entry in files.values()})
        size: int = sum(entry.size for entry in files.values())
        return size

    def _unchanged(self, name: str, raw: msgspec.Raw, kept: _LaneFile | None) -> _LaneFile | None:
        """The manifest's entry for lane ``name`` when its file already holds ``raw``."""
        if kept is None or len(raw) != kept.size:
            return None
        saved = self._saved.get(name)
        if saved is not None and saved[0] is raw and saved[1] == kept:
            return kept
        if not (self.directory / kept.file).is_file():
            return None
        # after a restart: the restored lane encodes to the same bytes as it was saved
        return kept if _digest(memoryview(raw)) == kept.digest else None

    def _write_lane(self, seq: int, name: str, raw: msgspec.Raw) -> _LaneFile:
        """``raw`` durable in a new file (no manifest names it yet)."""
        data = memoryview(raw)
        file = f"{self._PREFIX}{seq}.{name}.msgpack"
        write_atomically(self.directory / file, data, fsync=self._fsync)
        return _LaneFile(file, len(data), _digest(data))

    def _remove_unnamed(self, named: set[str]) -> None:
        """Delete lane files the manifest does not name (replaced ones, and those of a
        save that a crash interrupted before its manifest)."""
        for path in self.directory.glob(f"{self._PREFIX}*.msgpack"):
            if path.name not in named:
                path.unlink(missing_ok=True)

    def _manifest(self) -> _Manifest | None:
        """The manifest now on disk; None for none, a whole snapshot, or unreadable."""
        try:
            return _manifest_decoder.decode(self.path.read_bytes())
        except (FileNotFoundError, msgspec.DecodeError):
            return None

    def read(self) -> bytes | None:
        """The latest snapshot's bytes, or None when there is none; ``SnapshotDamagedError``
        when a lane file is missing or not what the manifest says."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            manifest = _manifest_decoder.decode(data)
        except msgspec.DecodeError:
            return data  # a whole snapshot (or garbage: decoding it will say so)
        lanes: dict[str, msgspec.Raw] = {}
        for name, entry in manifest.files.items():
            try:
                lane = (self.directory / entry.file).read_bytes()
            except FileNotFoundError:
                raise SnapshotDamagedError(f"lane file {entry.file} is missing") from None
            if len(lane) != entry.size or _digest(lane) != entry.digest:
                raise SnapshotDamagedError(f"lane file {entry.file} does not match the manifest")
            lanes[name] = msgspec.Raw(lane)
        snapshot = _EncodedSnapshot(
            version=manifest.version, settings=manifest.settings, lanes=lanes
        )
        return _encoder.encode(snapshot)
