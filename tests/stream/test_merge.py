"""``_merge``: how many buffered records precede a time, and taking them."""

from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from hotshelf.log import LogRecord
from hotshelf.stream._merge import _leading_before


def leading_before(stamps: list[int], limit_ms: int, most: int) -> int:
    """The definition: the longest prefix of at most ``most`` records stamped before."""
    n = 0
    while n < min(most, len(stamps)) and stamps[n] < limit_ms:
        n += 1
    return n


@given(
    stamps=st.lists(st.integers(0, 20), max_size=30),
    limit_ms=st.integers(0, 21),
    most=st.integers(0, 40),
)
def test_leading_before_counts_the_prefix_stamped_earlier(
    stamps: list[int], limit_ms: int, most: int
) -> None:
    buffer = deque(LogRecord(i, ts, b"") for i, ts in enumerate(stamps))
    assert _leading_before(buffer, limit_ms, most) == leading_before(stamps, limit_ms, most)
    assert [r.timestamp_ms for r in buffer] == stamps  # only looked at
