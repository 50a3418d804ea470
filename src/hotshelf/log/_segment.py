"""Segment files of the file log: naming, the sparse index, scanning and reading.

A segment is one file of whole frames, ``<topic>/<YYYY-MM-DD>/<HH>/<base offset>.log``
(UTC hour of its first append), with a sparse index ``<base offset>.idx`` next to it:
``(offset, position)`` pairs, one every ``index_interval_bytes``. The index is only a
hint. It is written after the data is synced, never synced itself, and every entry
is checked against the frame it points at before it is used.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple, Self

import structlog

from hotshelf.errors import CorruptLogError, OffsetOutOfRangeError
from hotshelf.log._base import Damage, LogRecord
from hotshelf.log._frame import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    FrameHeader,
    check_frame,
    decode_records,
    frame_candidates,
    records_fill,
)

__all__ = ["Segment", "SegmentCheck", "SegmentReader", "Span", "scan"]

_logger = structlog.get_logger("hotshelf.log")

_INDEX_ENTRY = struct.Struct("<QQ")
_U32 = struct.Struct("<I")
_CHUNK = 512 * 1024
_NEXT_FRAME_HINTS = 16  # remembered frame starts per segment (a few consumers' tails)
_NAME_DIGITS = 20


class Span(NamedTuple):
    """Damaged bytes ``[position, resume)``, holding offsets ``first``..``last``.

    ``resume``/``last`` are None when no good frame follows in the segment.
    """

    position: int
    resume: int | None
    first: int
    last: int | None
    reason: str

    def covers(self, offset: int) -> bool:
        return self.first <= offset and (self.last is None or offset <= self.last)


class SegmentReader:
    """Reads whole frames of one segment file through a buffer (``pread``, own handle)."""

    def __init__(self, path: Path, limit: int) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self.limit = limit
        self._buf = b""
        self._buf_pos = 0

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pread(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, min(size, self.limit - position), position)

    def _load(self, position: int, need: int) -> int:
        at = position - self._buf_pos
        if at < 0 or at + need > len(self._buf):
            self._buf = self.pread(position, max(need, _CHUNK))
            self._buf_pos, at = position, 0
        return at

    def frame(self, position: int) -> tuple[bytes, int, FrameHeader | str]:
        """The bytes holding the frame at ``position``, its index in them, and its check."""
        at = self._load(position, HEADER_SIZE)
        if len(self._buf) - at >= HEADER_SIZE:
            (length,) = _U32.unpack_from(self._buf, at)
            if HEADER_SIZE <= length <= self.limit - position:
                at = self._load(position, length)
        return self._buf, at, check_frame(self._buf, at, position)


def _resync(reader: SegmentReader, bad: int, expected: int) -> tuple[int, int] | None:
    """Position and base offset of the first good frame after damage at ``bad``."""
    position = bad + 1
    while position + HEADER_SIZE <= reader.limit:
        buf = reader.pread(position, _CHUNK)
        for at in frame_candidates(buf, position, expected, bad, reader.limit):
            _, _, found = reader.frame(position + at)
            if isinstance(found, FrameHeader):
                return found.position, found.base_offset
        position += len(buf) - HEADER_SIZE + 1
    return None


ScanItem = tuple[FrameHeader, bytes, int] | Span


def scan(
    reader: SegmentReader,
    position: int,
    expected: int,
    *,
    upper: int | None = None,
    known: Mapping[int, Span] | None = None,
) -> Iterator[ScanItem]:
    """Walk frames from ``position`` (holding offset ``expected``) to the reader's limit.

    Yields ``(header, buf, at)`` for each good frame and a ``Span`` for each stretch of
    damage (bad frames, gaps in offsets); a span with ``resume`` None ends the walk.
    ``upper`` is the segment's end offset when known; ``known`` maps positions to spans
    already found, so they are not searched for again.
    """
    known = known or {}
    while position < reader.limit:
        buf, at, found = reader.frame(position)
        if isinstance(found, FrameHeader):
            if found.base_offset != expected:
                if found.base_offset < expected:
                    reason = f"offsets go back from {expected} to {found.base_offset}"
                    yield Span(
                        position,
                        found.next_position,
                        found.base_offset,
                        found.end_offset - 1,
                        reason,
                    )
                    position = found.next_position
                    continue
                yield Span(position, position, expected, found.base_offset - 1, "offset gap")
            yield found, buf, at
            position, expected = found.next_position, found.end_offset
            continue
        span = known.get(position)
        if span is None:
            resumed = _resync(reader, position, expected)
            if resumed is None:
                last = None if upper is None else upper - 1
                span = Span(position, None, expected, last, found)
            else:
                span = Span(position, resumed[0], expected, resumed[1] - 1, found)
        yield span
        if span.resume is None or span.last is None:
            return
        position, expected = span.resume, span.last + 1


class Segment:
    """One segment file and what the log knows about it.

    ``size`` and ``end_offset`` cover only durable frames: the writer moves them after
    each sync, and readers never look past them.
    """

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.index_path = path.with_suffix(".idx")
        self.base_offset = base_offset
        self.end_offset = base_offset
        self.size = 0
        self.last_ts_ms = 0
        # (offset, position) of frame starts, always beginning with the first frame.
        self.index: list[tuple[int, int]] = [(base_offset, 0)]
        self.spans: list[Span] = []
        # offset -> position of the frame that starts just past a recent read's last
        # frame: a consumer following the tail comes back for exactly that offset, and
        # starts there instead of at the index entry before it (up to
        # index_interval_bytes of small frames to walk and check again)
        self._next_frames: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"Segment({str(self.path)!r}, {self.base_offset}..{self.end_offset})"

    @staticmethod
    def path_for(directory: Path, base_offset: int, ts_ms: int) -> Path:
        hour = time.strftime("%Y-%m-%d/%H", time.gmtime(ts_ms // 1000))
        return directory / hour / f"{base_offset:0{_NAME_DIGITS}d}.log"

    @classmethod
    def discover(cls, directory: Path) -> list[Segment]:
        """The segments under ``directory``, oldest first."""
        found = [cls(p, int(p.stem)) for p in directory.glob("*/*/*.log") if p.stem.isdigit()]
        found.sort(key=lambda seg: seg.base_offset)
        return found

    def damage(self) -> list[Damage]:
        return [Damage(str(self.path), s.position, s.first, s.last, s.reason) for s in self.spans]

    def add_span(self, span: Span, event: str = "log.damage_found") -> bool:
        """Remember damage and log it as ``event``; False when it was already known."""
        if any(s.position == span.position for s in self.spans):
            return False
        self.spans = sorted([*self.spans, span])
        _logger.error(
            event,
            path=str(self.path),
            position=span.position,
            first_offset=span.first,
            last_offset=span.last,
            reason=span.reason,
        )
        return True

    # -- the sparse index ------------------------------------------------------------

    def load_index(self) -> list[tuple[int, int]]:
        """Index entries from disk, dropping any that cannot be right; [] if missing."""
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return []
        entries: list[tuple[int, int]] = []
        prev = (self.base_offset, 0)
        for offset, position in _INDEX_ENTRY.iter_unpack(raw[: len(raw) // 16 * 16]):
            if offset <= prev[0] or position <= prev[1] or position >= self.size:
                break
            entries.append((offset, position))
            prev = (offset, position)
        return entries

    def write_index(self) -> None:
        """Rewrite the index file from memory (atomically; unsynced, as it is a hint)."""
        tmp = self.index_path.with_suffix(".idx.tmp")
        tmp.write_bytes(self.encode_index(self.index[1:]))
        tmp.replace(self.index_path)

    @staticmethod
    def encode_index(entries: list[tuple[int, int]]) -> bytes:
        return b"".join(_INDEX_ENTRY.pack(o, p) for o, p in entries)

    @staticmethod
    def _plausible_entries(
        reader: SegmentReader, entries: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """The entries before the first whose position holds no header for its offset."""
        for i, (offset, position) in enumerate(entries):
            head = reader.pread(position, HEADER_SIZE)
            if len(head) < HEADER_SIZE or HEADER.unpack(head)[2:4] != (MAGIC, offset):
                return entries[:i]
        return entries

    def _start_for(self, offset: int, reader: SegmentReader) -> tuple[int, int]:
        """Where to start scanning for ``offset``: the frame a recent read ended before,
        an index entry, or past known damage."""
        start_offset, position = offset, self._next_frames.get(offset, -1)
        if position < 0 or not self._frame_at(reader, position, offset):
            i = bisect_right(self.index, offset, key=lambda entry: entry[0]) - 1
            start_offset, position = self.index[max(i, 0)]
            if position and not self._frame_at(reader, position, start_offset):
                start_offset, position = self.base_offset, 0  # stale entry: scan it all
        for span in self.spans:
            if span.covers(offset):
                raise self.corrupt(span)
            if span.resume is None or span.last is None:
                continue
            if position < span.resume and span.last < offset:
                start_offset, position = span.last + 1, span.resume
        return start_offset, position

    @staticmethod
    def _frame_at(reader: SegmentReader, position: int, offset: int) -> bool:
        """Whether a good frame holding ``offset`` first starts at ``position``."""
        _, _, found = reader.frame(position)
        return isinstance(found, FrameHeader) and found.base_offset == offset

    def _note_next_frame(self, offset: int, position: int) -> None:
        """Remember where the frame after a read's last one starts (a few reads' worth)."""
        hints = self._next_frames
        hints[offset] = position
        while len(hints) > _NEXT_FRAME_HINTS:
            hints.pop(next(iter(hints)), None)

    def corrupt(self, span: Span) -> CorruptLogError:
        last = "?" if span.last is None else span.last
        return CorruptLogError(
            f"offsets {span.first}..{last} are damaged ({span.reason}) "
            f"in {self.path} at byte {span.position}",
            path=str(self.path),
            first=span.first,
            last=span.last,
        )

    # -- reading -----------------------------------------------------------------------

    def read(self, offset: int, max_records: int, size: int, upper: int | None) -> list[LogRecord]:
        """Up to ``max_records`` records from ``offset``, within the first ``size`` bytes.

        Stops early at damage once it has records, and raises ``CorruptLogError`` when
        ``offset`` itself is damaged.
        """
        try:
            reader = SegmentReader(self.path, size)
        except FileNotFoundError:
            raise OffsetOutOfRangeError(f"offset {offset} was dropped by retention") from None
        out: list[LogRecord] = []
        with reader:
            start_offset, position = self._start_for(offset, reader)
            known = {s.position: s for s in self.spans}
            for item in scan(reader, position, start_offset, upper=upper, known=known):
                if isinstance(item, Span):
                    self.add_span(item)
                    if item.last is not None and item.last < offset:
                        continue
                    if out:
                        break
                    raise self.corrupt(item)
                header, buf, at = item
                if header.end_offset <= offset:
                    continue
                try:
                    records = decode_records(buf, at, header, offset)
                except ValueError as exc:
                    span = Span(
                        header.position,
                        header.next_position,
                        header.base_offset,
                        header.end_offset - 1,
                        str(exc),
                    )
                    self.add_span(span)
                    if out:
                        break
                    raise self.corrupt(span) from None
                taken = records[: max_records - len(out)]
                out.extend(taken)
                if len(taken) == len(records):  # the frame read to its end
                    self._note_next_frame(header.end_offset, header.next_position)
                if len(out) >= max_records:
                    break
        return out

    def check(self, size: int, upper: int | None, interval: int) -> SegmentCheck:
        """Walk every frame in the first ``size`` bytes, records included (``verify``)."""
        result = SegmentCheck(self.base_offset, [], check_records=True)
        with SegmentReader(self.path, size) as reader:
            known = {s.position: s for s in self.spans}
            for item in scan(reader, 0, self.base_offset, upper=upper, known=known):
                result.add(item, interval)
        return result

    def recover(self, upper: int | None, interval: int, *, check_all: bool) -> SegmentCheck:
        """Open-time check: size from the file, the index from disk, then walk the tail.

        The walk starts at the last index entry that points at a good frame with the
        offset it claims (from the start when there is none), so it is cheap. With
        ``check_all`` every entry's header is checked too (the active segment's index
        is extended, never rebuilt, while the log runs).
        """
        self.size = self.path.stat().st_size
        loaded = self.load_index()
        with SegmentReader(self.path, self.size) as reader:
            entries = loaded[:]
            if check_all:
                entries = self._plausible_entries(reader, entries)
            while entries:
                _, _, found = reader.frame(entries[-1][1])
                if isinstance(found, FrameHeader) and found.base_offset == entries[-1][0]:
                    break
                entries.pop()
            start = entries[-1] if entries else (self.base_offset, 0)
            result = SegmentCheck(start[0], [(self.base_offset, 0), *entries])
            result.loaded_index = loaded
            for item in scan(reader, start[1], start[0], upper=upper):
                result.add(item, interval)
        return result

    def delete(self) -> None:
        for path in (self.path, self.index_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for directory in (self.path.parent, self.path.parent.parent):
            with contextlib.suppress(OSError):  # not empty: other segments live there
                directory.rmdir()


class SegmentCheck:
    """What walking a segment found: frames, records, damage, and the index to keep."""

    def __init__(
        self, expected: int, index: list[tuple[int, int]], *, check_records: bool = False
    ) -> None:
        self.end_offset = expected
        self.records = 0
        self.last_ts_ms: int | None = None
        self.index = index
        self.frame_positions: dict[int, int] = {}
        self.spans: list[Span] = []
        self.torn: Span | None = None
        self.loaded_index: list[tuple[int, int]] = []
        self._check_records = check_records

    def add(self, item: ScanItem, interval: int) -> None:
        if isinstance(item, Span):
            self.spans.append(item)
            if item.resume is None:
                self.torn = item
            elif item.last is not None:
                self.end_offset = max(self.end_offset, item.last + 1)
            return
        header, buf, at = item
        if self._check_records and not records_fill(buf, at, header):
            span = Span(
                header.position,
                header.next_position,
                header.base_offset,
                header.end_offset - 1,
                "record lengths do not fill the frame",
            )
            self.spans.append(span)
        else:
            self.records += header.record_count
        position = header.position
        if not self.index or position - self.index[-1][1] >= interval:
            self.index.append((header.base_offset, position))
        self.frame_positions[position] = header.base_offset
        self.end_offset = header.end_offset
        self.last_ts_ms = header.timestamp_ms
