"""The tail marker: where a file log's durable records end, for readers in other processes.

A ``FileLog`` is written by one process (its directory lock says so), and everything
it knows about its segments lives in that process's memory. Another process can read
the segment files, but cannot tell on its own where the durable records end: the
writer may be half-way through a frame, or have written a group it has not synced.
So the writer publishes, after every group it syncs and whenever retention moves the
start, one small record in ``<directory>/tail``:

    magic "HSTL", version, sequence, start offset, end offset,
    base offset of the last segment, its durable size in bytes, CRC-32 of the rest

with one ``pwrite`` (~2 µs on the writer thread, never synced: it describes synced
data, and a writer that reopens the log publishes again after its recovery). A reader
(``LogFollower``) reads it with one ``pread``, and reads segment files only up to it:
it never sees a record the writer has not made durable, or bytes being written.

A read can race a write and see a mix of two records; the CRC catches that, and the
reader reads again. A marker that stays unreadable means a writer died in the middle
of that one write: ``TailReader.read`` then raises ``CorruptLogError``, and the
writer's next open rewrites it.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path
from typing import NamedTuple

from hotshelf.errors import CorruptLogError, NotFoundError

__all__ = ["TAIL_NAME", "Tail", "TailReader", "TailWriter"]

TAIL_NAME = "tail"
_MAGIC = b"HSTL"
_VERSION = 1
_BODY = struct.Struct("<4sHxxQQQQQ")  # magic, version, seq, start, end, last base, last size
_CRC = struct.Struct("<I")
_SIZE = _BODY.size + _CRC.size
# How often a reader retries a marker that does not check (a read racing the writer's
# one pwrite) before it calls the marker damaged.
_RETRIES = 50
_RETRY_SLEEP_S = 0.0005


class Tail(NamedTuple):
    """The writer's published view: ``start..end`` readable, the last segment (base
    offset ``last_base``) holding ``last_size`` durable bytes. ``seq`` counts
    publications since the writer opened the log."""

    seq: int
    start: int
    end: int
    last_base: int
    last_size: int


def _encode(tail: Tail) -> bytes:
    body = _BODY.pack(_MAGIC, _VERSION, *tail)
    return body + _CRC.pack(zlib.crc32(body))


def _decode(raw: bytes) -> Tail | None:
    """The marker in ``raw``, or None when it does not check (torn or damaged)."""
    if len(raw) != _SIZE:
        return None
    body = raw[: _BODY.size]
    if _CRC.unpack_from(raw, _BODY.size)[0] != zlib.crc32(body):
        return None
    magic, version, *fields = _BODY.unpack(body)
    if magic != _MAGIC or version != _VERSION:
        return None
    return Tail(*fields)


class TailWriter:
    """The writer's side: ``publish`` from under the log state's lock, so publications
    (the writer thread's groups, retention) reach the file in the order they happened."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / TAIL_NAME
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o644)
        self._seq = 0

    def publish(self, start: int, end: int, last_base: int, last_size: int) -> None:
        self._seq += 1
        os.pwrite(self._fd, _encode(Tail(self._seq, start, end, last_base, last_size)), 0)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class TailReader:
    """A reader's side: ``read`` the current marker (one ``pread``)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / TAIL_NAME
        try:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise NotFoundError(
                f"no log to follow in {directory}: its writer has never opened it "
                f"(or it predates tail markers; open it once with this version)"
            ) from None

    def read(self) -> Tail:
        for _ in range(_RETRIES):
            tail = _decode(os.pread(self._fd, _SIZE, 0))
            if tail is not None:
                return tail
            time.sleep(_RETRY_SLEEP_S)
        raise CorruptLogError(
            f"the tail marker {self.path} does not check: its writer died while writing "
            f"it; the writer's next open rewrites it",
            path=str(self.path),
            first=0,
            last=None,
        )

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
