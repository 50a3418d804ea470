"""``MmapTier``: embeddings in a memory-mapped file, the embedded default remote tier.

One directory holds:

* ``meta.json``    the format version and ``dim``, written once (temp file + rename);
* ``vectors.f32``  a raw little-endian float32 matrix, one row per stored vector,
  memory-mapped; it grows by doubling (sparse on disk until written);
* ``keys.journal`` an append-only journal of ``put key -> row`` and ``delete key``
  records, each ``[crc32c][op][row][key length][key]``;
* ``.lock``        an ``flock`` held while open: two writers would corrupt the files.

Durability guarantee. ``put_many`` writes its vectors to rows that no key points to
(never over a live vector), flushes them (``msync``), then appends one journal record
per key and fsyncs the journal, and only then moves the keys to their new rows and
frees the old ones. So when ``put_many`` (or ``delete_many``) returns, a reopen after a
crash of the process sees it, and with ``fsync=True`` (the default) so does a reopen
after a power loss. A call that had not returned is either wholly there or wholly
absent per key, never half-written: a torn journal tail fails its CRC and is cut off
on open, and the vector it would have pointed to was written to a free row.

The journal is rewritten compactly (temp file, fsync, rename, directory fsync) when it
holds more than twice as many records as there are keys (plus some slack), so its size
stays proportional to the live keys at an amortised O(1) per write.

Followers. ``read_vectors`` reads the store from another process while its writer
runs, taking no lock and writing nothing (a recommend replica does): it replays the
journal as it finds it, copies the rows, and checks the journal again afterwards (a
row freed by an overwrite is reused by a later write, so the copy could have caught a
row being rewritten for another key).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import crc32c
import msgspec
import numpy as np
import numpy.typing as npt
import structlog

from hotshelf._files import lock_directory, write_atomically
from hotshelf.embeddings._tier import (
    EmbeddingTier,
    FoundMask,
    Vectors,
    check_dim,
    check_keys,
    check_vectors,
    empty_result,
)
from hotshelf.errors import ConfigError, UnavailableError

__all__ = ["MmapTier", "read_vectors"]

_logger = structlog.get_logger("hotshelf.embeddings")
_FORMAT = 1
_PUT, _DELETE = 1, 2
_RECORD = struct.Struct("<IBIH")  # crc32c of the rest, op, row, key length; then the key
_COMPACT_SLACK = 4096
_READ_ATTEMPTS = 5
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class _Meta(msgspec.Struct, frozen=True):
    format: int
    dim: int


def _record(op: int, row: int, key: str) -> bytes:
    raw = key.encode()
    body = _RECORD.pack(0, op, row, len(raw))[4:] + raw
    return struct.pack("<I", crc32c.crc32c(body)) + body


def _records(data: bytes, pos: int = 0) -> Iterator[tuple[int, int, str, int]]:
    """(op, row, key, end) of each good journal record from ``pos``, up to the first
    torn or damaged one."""
    while pos + _RECORD.size <= len(data):
        crc, op, row, length = _RECORD.unpack_from(data, pos)
        end = pos + _RECORD.size + length
        if end > len(data) or crc32c.crc32c(data[pos + 4 : end]) != crc:
            return
        yield op, row, data[pos + _RECORD.size : end].decode(), end
        pos = end


def _replay(data: bytes) -> tuple[dict[str, int], int, int]:
    """(key -> row, records read, end of the last good record) of a journal's bytes."""
    index: dict[str, int] = {}
    records = end = 0
    for op, row, key, record_end in _records(data):
        if op == _PUT:
            index[key] = row
        else:
            index.pop(key, None)
        records, end = records + 1, record_end
    return index, records, end


class MmapTier(EmbeddingTier):
    """Vectors in a memory-mapped file under ``directory``; survives crashes (see above)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        dim: int,
        *,
        fsync: bool = True,
        initial_rows: int = 1024,
    ) -> None:
        self.directory = Path(directory)
        self._dim = check_dim(dim)
        self._fsync = fsync
        self._row_bytes = dim * 4
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(self.directory, "the embedding store")
        self._lock = threading.Lock()
        try:
            self._check_meta()
            self._index, self._records, journal_end = self._read_journal()
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._journal = os.open(self._journal_path, flags, 0o644)
            os.ftruncate(self._journal, journal_end)  # a torn tail is cut off
            self._open_vectors(max(initial_rows, 1))
        except BaseException:
            os.close(self._lock_fd)
            raise
        used = set(self._index.values())
        self._next_row = max(used) + 1 if used else 0
        self._free = sorted(set(range(self._next_row)) - used, reverse=True)
        self._closed = False
        self._maybe_compact()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def _journal_path(self) -> Path:
        return self.directory / "keys.journal"

    def __len__(self) -> int:
        return len(self._index)

    # -- opening ---------------------------------------------------------------

    def _check_meta(self) -> None:
        path = self.directory / "meta.json"
        if path.exists():
            meta = msgspec.json.decode(path.read_bytes(), type=_Meta)
            if meta.format != _FORMAT or meta.dim != self._dim:
                raise ConfigError(
                    f"embedding store {self.directory} holds format {meta.format}, dim "
                    f"{meta.dim}; opened with format {_FORMAT}, dim {self._dim}"
                )
            return
        write_atomically(path, msgspec.json.encode(_Meta(_FORMAT, self._dim)))

    def _read_journal(self) -> tuple[dict[str, int], int, int]:
        """(key -> row, records read, end of the last good record) from the journal."""
        data = self._journal_path.read_bytes() if self._journal_path.exists() else b""
        index, records, end = _replay(data)
        if end < len(data):
            _logger.warning(
                "embeddings.journal_dropped", path=str(self._journal_path), bytes=len(data) - end
            )
        return index, records, end

    def _open_vectors(self, min_rows: int) -> None:
        path = self.directory / "vectors.f32"
        self._vectors_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        rows = max(min_rows, os.fstat(self._vectors_fd).st_size // self._row_bytes)
        if self._index:
            rows = max(rows, max(self._index.values()) + 1)
        self._map(rows)

    def _map(self, rows: int) -> None:
        size = rows * self._row_bytes
        if os.fstat(self._vectors_fd).st_size < size:
            os.ftruncate(self._vectors_fd, size)
        self._mm = mmap.mmap(self._vectors_fd, size)
        self._matrix: Vectors = np.frombuffer(self._mm, dtype="<f4").reshape(rows, self._dim)

    def _grow(self, rows: int) -> None:
        old = self._mm
        del self._matrix  # the old map's only export: close() needs it gone
        self._map(rows)
        old.close()

    # -- reading ---------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> tuple[Vectors, FoundMask]:
        n = len(keys)
        if n == 0:
            return empty_result(0, self._dim)
        with self._lock:
            self._check_open()
            index = self._index
            rows = np.fromiter([index.get(key, -1) for key in keys], dtype=np.intp, count=n)
            vectors = self._matrix[rows]  # -1 reads the last row; zeroed below
        found = rows >= 0
        if not found.all():
            vectors[~found] = 0.0
        return vectors, found

    # -- writing ---------------------------------------------------------------

    def put_many(self, keys: Sequence[str], vectors: npt.ArrayLike) -> None:
        keys = check_keys(keys)
        matrix = check_vectors(keys, vectors, self._dim)
        if not keys:
            return
        last = {key: i for i, key in enumerate(keys)}
        if len(last) < len(keys):
            keys, matrix = list(last), matrix[list(last.values())]
        with self._lock:
            self._check_open()
            rows = [self._take_row() for _ in keys]
            self._matrix[rows] = matrix
            if self._fsync:
                self._mm.flush()
            self._append([_record(_PUT, row, key) for key, row in zip(keys, rows, strict=True)])
            for key, row in zip(keys, rows, strict=True):
                old = self._index.get(key)
                self._index[key] = row
                if old is not None:
                    self._free.append(old)
            self._maybe_compact()

    def delete_many(self, keys: Sequence[str]) -> int:
        with self._lock:
            self._check_open()
            present = [key for key in dict.fromkeys(keys) if key in self._index]
            if not present:
                return 0
            self._append([_record(_DELETE, 0, key) for key in present])
            for key in present:
                self._free.append(self._index.pop(key))
            self._maybe_compact()
        return len(present)

    def _take_row(self) -> int:
        if self._free:
            return self._free.pop()
        row = self._next_row
        if row >= len(self._matrix):
            self._grow(2 * len(self._matrix))
        self._next_row += 1
        return row

    def _append(self, records: list[bytes]) -> None:
        blob = memoryview(b"".join(records))
        self._records += len(records)
        written = 0
        while written < len(blob):
            written += os.write(self._journal, blob[written:])
        if self._fsync:
            _datasync(self._journal)

    def _maybe_compact(self) -> None:
        if self._records <= 2 * len(self._index) + _COMPACT_SLACK:
            return
        blob = b"".join(_record(_PUT, row, key) for key, row in self._index.items())
        write_atomically(self._journal_path, blob)
        os.close(self._journal)
        self._journal = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND)
        self._records = len(self._index)

    # -- closing ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError(f"the embedding store in {self.directory} is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._mm.flush()
            del self._matrix
            self._mm.close()
            os.close(self._vectors_fd)
            os.close(self._journal)
            os.close(self._lock_fd)


# -- reading from another process --------------------------------------------------


def read_vectors(
    directory: str | os.PathLike[str], keys: Sequence[str], *, attempts: int = _READ_ATTEMPTS
) -> tuple[int, Vectors, FoundMask]:
    """``(dim, vectors, found)`` of ``keys`` in the store under ``directory``, read
    without its lock and without writing anything, while its writer may be running.

    A copy that a write could have spoilt (a record appended meanwhile moved or deleted
    one of ``keys``, or the journal was compacted) is taken again, up to ``attempts``
    times; then ``UnavailableError``.
    """
    directory = Path(directory)
    try:
        meta = msgspec.json.decode((directory / "meta.json").read_bytes(), type=_Meta)
    except FileNotFoundError:
        raise UnavailableError(f"no embedding store in {directory}") from None
    if meta.format != _FORMAT:
        raise ConfigError(f"embedding store {directory} holds format {meta.format}, not {_FORMAT}")
    for _ in range(attempts):
        answer = _read_once(directory, meta.dim, keys)
        if answer is not None:
            return meta.dim, *answer
    raise UnavailableError(
        f"the embedding store in {directory} kept changing while it was read ({attempts} tries)"
    )


def _read_once(directory: Path, dim: int, keys: Sequence[str]) -> tuple[Vectors, FoundMask] | None:
    """``keys``' vectors as the journal has them now, or None if a write spoilt the copy."""
    journal = directory / "keys.journal"
    try:
        fd = os.open(journal, os.O_RDONLY)
    except FileNotFoundError:  # the writer is opening the store: nothing written yet
        return empty_result(len(keys), dim)
    try:
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        index, _, end = _replay(data)  # a torn tail (an append in progress) is left out
        rows = np.fromiter((index.get(key, -1) for key in keys), dtype=np.intp, count=len(keys))
        found = rows >= 0
        copied = _copy_rows(directory / "vectors.f32", rows[found], dim)
        if copied is None or _moved(fd, journal, end, {k for k in keys if k in index}):
            return None
    finally:
        os.close(fd)
    vectors, _ = empty_result(len(keys), dim)
    vectors[found] = copied
    return vectors, found


def _copy_rows(path: Path, rows: npt.NDArray[np.intp], dim: int) -> Vectors | None:
    """A copy of ``rows`` of the matrix in ``path``; None if one lies past its end."""
    if not len(rows):
        return np.empty((0, dim), dtype=np.float32)
    with open(path, "rb") as f:
        count = os.fstat(f.fileno()).st_size // (dim * 4)
        if rows.max() >= count:
            return None
        with mmap.mmap(f.fileno(), count * dim * 4, access=mmap.ACCESS_READ) as mm:
            matrix = np.frombuffer(mm, dtype="<f4").reshape(count, dim)
            try:
                return matrix[rows]  # fancy indexing copies
            finally:
                del matrix  # the map's only export: closing it needs it gone


def _moved(fd: int, journal: Path, end: int, keys: set[str]) -> bool:
    """Whether the writer may have reused a row of ``keys`` since the journal open as
    ``fd`` was read up to ``end``: a record appended since names one of them (rows are
    freed only after the record that frees them is written), or the journal was
    replaced by a compaction."""
    try:
        if os.stat(journal).st_ino != os.fstat(fd).st_ino:
            return True
    except FileNotFoundError:
        return True
    tail = os.pread(fd, os.fstat(fd).st_size - end, end)
    return any(key in keys for _, _, key, _ in _records(tail))
