"""The batch frame: encoding round trips and the checksum catches damage."""

from __future__ import annotations

import array
import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotshelf.errors import PayloadTooLargeError, ValidationError
from hotshelf.log import MAX_RECORD_BYTES
from hotshelf.log._frame import (
    HEADER_SIZE,
    FrameHeader,
    check_frame,
    decode_records,
    encode_frame,
    encode_records,
    frame_candidates,
    records_fill,
)


def frame(values: list[bytes], base: int = 0, ts: int = 1_700_000_000_000) -> bytes:
    return b"".join(encode_frame(base, len(values), ts, encode_records(values)))


@given(
    values=st.lists(st.binary(max_size=200), min_size=1, max_size=30),
    base=st.integers(min_value=0, max_value=2**63 - 1 - 30),
    ts=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    pad=st.binary(max_size=10),
)
def test_round_trip(values: list[bytes], base: int, ts: int, pad: bytes) -> None:
    data = pad + frame(values, base, ts)
    header = check_frame(data, len(pad), 1000)
    assert isinstance(header, FrameHeader)
    assert header == FrameHeader(1000, len(data) - len(pad), base, len(values), ts)
    assert records_fill(data, len(pad), header)
    records = decode_records(data, len(pad), header)
    assert [r.value for r in records] == values
    assert [r.offset for r in records] == list(range(base, base + len(values)))
    assert {r.timestamp_ms for r in records} == {ts}
    skip = len(values) // 2
    assert [r.value for r in decode_records(data, len(pad), header, base + skip)] == values[skip:]
    # a consumer makes one per record: none may cost the cyclic GC anything
    assert not any(gc.is_tracked(r) for r in records)


def test_every_single_bit_flip_is_caught() -> None:
    data = frame([b"alpha", b"", b"gamma" * 3], base=42)
    assert isinstance(check_frame(data, 0, 0), FrameHeader)
    for bit in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        assert isinstance(check_frame(bytes(damaged), 0, 0), str), f"bit {bit} slipped through"


def test_a_cut_frame_is_incomplete() -> None:
    data = frame([b"x" * 50])
    for cut in range(len(data)):
        assert isinstance(check_frame(data[:cut], 0, 0), str)


@given(st.binary(max_size=400), st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_candidates_find_the_frame_after_garbage(garbage: bytes, values: list[bytes]) -> None:
    good = frame(values, base=7)
    data = garbage + good
    found = [
        at
        for at in frame_candidates(data, 0, 7, 0, len(data))
        if isinstance(check_frame(data, at, at), FrameHeader)
    ]
    assert found[-1] == len(garbage)


def test_candidates_reject_implausible_offsets() -> None:
    data = b"\0" * 8 + frame([b"abc"], base=10_000)
    # 8 damaged bytes cannot have held 10,000 records.
    assert list(frame_candidates(data, 0, 0, 0, len(data))) == []


def test_encode_records_lays_out_lengths_and_bytes() -> None:
    body = encode_records([b"ab", bytearray(b"c")])
    assert body == b"\x02\0\0\0ab\x01\0\0\0c"
    assert HEADER_SIZE == 29


def test_encode_records_rejects_bad_batches() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        encode_records([])
    with pytest.raises(ValidationError) as info:
        encode_records([b"ok", "text", 5])  # type: ignore[list-item]
    assert [p.path for p in info.value.problems] == ["$[1]", "$[2]"]
    with pytest.raises(PayloadTooLargeError):
        encode_records([b"ok", b"x" * (MAX_RECORD_BYTES + 1)])
    with pytest.raises(ValidationError):
        encode_records([memoryview(array.array("i", [1, 2]))])  # type: ignore[list-item]


@given(
    values=st.lists(st.binary(max_size=40), min_size=1, max_size=12),
    which=st.integers(min_value=0),
    length=st.integers(min_value=0, max_value=2**32 - 1),
    tail=st.binary(max_size=8),
    first=st.integers(min_value=0, max_value=12),
)
def test_lengths_that_do_not_fill_the_frame_are_refused(
    values: list[bytes], which: int, length: int, tail: bytes, first: int
) -> None:
    # A record length rewritten after the checksum (a writer's bug, not damage): the
    # frame is refused whichever records are asked for, never read past its end.
    data = bytearray(frame(values))
    header = check_frame(bytes(data), 0, 0)
    assert isinstance(header, FrameHeader)
    at = HEADER_SIZE + sum(4 + len(v) for v in values[: which % len(values)])
    if length == len(values[which % len(values)]):
        return
    data[at : at + 4] = length.to_bytes(4, "little")
    with pytest.raises(ValueError, match=r"past the end|do not fill"):
        decode_records(bytes(data) + tail, 0, header, first)
    assert not records_fill(bytes(data) + tail, 0, header)
