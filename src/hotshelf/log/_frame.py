"""The on-disk batch frame of the file log.

One ``append`` is one frame, so a batch is atomic on disk: a torn write breaks the
frame's checksum and recovery drops the whole (unacknowledged) batch. Little-endian::

    u32 frame_len      whole frame, these 4 bytes included
    u32 crc32c         over every byte after this field
    u8  magic          format version (MAGIC)
    u64 base_offset    offset of the first record
    u32 count          records in the frame (>= 1)
    i64 append_ts_ms   when the log wrote the frame (epoch ms)
    count x (u32 len, len bytes)

The checksum does not cover ``frame_len``, but a wrong length moves the span the
checksum is computed over, so a damaged length is caught too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import crc32c

from hotshelf.errors import ValidationError
from hotshelf.log._base import MAX_RECORD_BYTES, LogRecord, check_batch

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "FrameHeader",
    "check_frame",
    "decode_records",
    "encode_frame",
    "encode_records",
    "frame_candidates",
    "records_fill",
]

MAGIC = 0xB1
HEADER = struct.Struct("<IIBQIq")
HEADER_SIZE = HEADER.size  # 29
_PREFIX = struct.Struct("<II")  # frame_len, crc
_TAIL = struct.Struct("<BQIq")  # magic, base_offset, count, append_ts_ms
_U32 = struct.Struct("<I")
_MAGIC_BYTE = bytes([MAGIC])
_MAGIC_AT = _PREFIX.size  # where the magic byte sits in a frame
# Each record costs at least its 4-byte length, which bounds how many records
# a stretch of damaged bytes can have held.
_MIN_RECORD_BYTES = _U32.size


class FrameHeader(NamedTuple):
    """A frame whose checksum checked out, at ``position`` in its file."""

    position: int
    length: int
    base_offset: int
    record_count: int
    timestamp_ms: int

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.record_count

    @property
    def next_position(self) -> int:
        return self.position + self.length


def encode_records(values: Sequence[bytes]) -> bytes:
    """The records part of a frame; a bad batch raises ``check_batch``'s errors."""
    n = len(values)
    if n == 0:
        check_batch(values)
    parts: list[bytes] = [b""] * (2 * n)
    try:
        lengths = list(map(len, values))
        parts[0::2] = map(_U32.pack, lengths)
        parts[1::2] = values
        body = b"".join(parts)
    except (TypeError, struct.error):
        check_batch(values)
        raise
    # One check over the whole batch instead of one per record: catches oversized
    # records and bytes-likes whose len() is not their size (a memoryview of ints).
    if max(lengths) > MAX_RECORD_BYTES or len(body) != 4 * n + sum(lengths):
        check_batch(values)
        raise ValidationError("records must be bytes")
    return body


def encode_frame(base_offset: int, count: int, timestamp_ms: int, body: bytes) -> list[bytes]:
    """A frame as buffers for ``writev``: prefix, tail of the header, then ``body``."""
    tail = _TAIL.pack(MAGIC, base_offset, count, timestamp_ms)
    crc = crc32c.crc32c(body, crc32c.crc32c(tail))
    return [_PREFIX.pack(HEADER_SIZE + len(body), crc), tail, body]


def check_frame(buf: bytes, at: int, position: int) -> FrameHeader | str:
    """The header of the frame at ``buf[at:]`` if it is whole and its checksum holds.

    Otherwise a short reason. ``position`` is where ``buf[at]`` lies in the file.
    """
    if len(buf) - at < HEADER_SIZE:
        return "incomplete header"
    length, crc, magic, base, count, ts = HEADER.unpack_from(buf, at)
    if magic != MAGIC:
        return f"bad magic byte {magic:#x}"
    if length < HEADER_SIZE + _MIN_RECORD_BYTES * count or count < 1:
        return f"bad frame length {length} for {count} records"
    if len(buf) - at < length:
        return f"incomplete frame: {len(buf) - at} of {length} bytes"
    if crc32c.crc32c(memoryview(buf)[at + _MAGIC_AT : at + length]) != crc:
        return "checksum mismatch"
    return FrameHeader(position, length, base, count, ts)


def decode_records(buf: bytes, at: int, header: FrameHeader, first: int = 0) -> list[LogRecord]:
    """The records of a checked frame at ``buf[at:]``, from offset ``first`` on.

    Raises ``ValueError`` when the record lengths do not fill the frame exactly.

    Written for mypyc (a stream reads thousands of records per poll): the lengths are
    read a byte at a time and the values sliced with ``bytes`` primitives, all on native
    ints, and the frame's timestamp is boxed once for all its records. Each record's end
    is checked against the frame's, and a length field past the end of what was read is
    damage like any other.
    """
    pos: int = at + HEADER_SIZE
    end: int = at + header.length
    base: int = header.base_offset
    count: int = header.record_count
    stamp: object = header.timestamp_ms
    limit = min(end, len(buf)) - 4  # the last position a length field can start at
    skip = min(max(first - base, 0), count)
    out: list[LogRecord] = []
    make = LogRecord
    offset, stop = base + skip, base + count
    for _ in range(skip):
        if pos > limit:
            raise ValueError("records run past the end of their frame")
        pos += 4 + _length_at(buf, pos)
    while offset < stop:
        if pos > limit:
            raise ValueError("records run past the end of their frame")
        start = pos + 4
        pos = start + _length_at(buf, pos)
        if pos > end:
            raise ValueError("records run past the end of their frame")
        out.append(make(offset, stamp, buf[start:pos]))  # type: ignore[arg-type]  # boxed int
        offset += 1
    if pos != end:
        raise ValueError("record lengths do not fill the frame")
    return out


def _length_at(buf: bytes, pos: int) -> int:
    """The little-endian u32 at ``buf[pos:pos + 4]`` (the caller checked it is there)."""
    return buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | buf[pos + 3] << 24


def records_fill(buf: bytes, at: int, header: FrameHeader) -> bool:
    """Whether the record lengths of a checked frame fill it exactly."""
    pos = at + HEADER_SIZE
    end = at + header.length
    unpack = _U32.unpack_from
    for _ in range(header.record_count):
        if pos + 4 > end:
            return False
        pos += 4 + unpack(buf, pos)[0]
    return pos == end


def frame_candidates(
    buf: bytes, position: int, expected: int, damaged_from: int, limit: int
) -> Iterator[int]:
    """Indices in ``buf`` (file bytes from ``position``) where a plausible header starts.

    Used to find where good data resumes after damage starting at ``damaged_from``:
    the header must fit in ``buf``, the frame in the file (``limit`` bytes), and its
    base offset must be at least ``expected`` and at most ``expected`` plus the number
    of records the damaged bytes could have held. The caller checks the checksum.
    """
    i = buf.find(_MAGIC_BYTE, _MAGIC_AT)
    last = len(buf) - HEADER_SIZE
    while 0 <= i - _MAGIC_AT <= last:
        at = i - _MAGIC_AT
        length, _, _, base, count, _ = HEADER.unpack_from(buf, at)
        lost_records = (position + at - damaged_from) // _MIN_RECORD_BYTES
        if (
            count >= 1
            and HEADER_SIZE + _MIN_RECORD_BYTES * count <= length <= limit - position - at
            and expected <= base <= expected + lost_records
        ):
            yield at
        i = buf.find(_MAGIC_BYTE, i + 1)
