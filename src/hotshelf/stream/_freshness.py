"""Freshness: how long an event took from arrival to being visible in the stream state.

For every live-lane event the processor applies, the time from its ``received_ms``
(when the API accepted it) to the end of the batch that applied it (when queries
can see it) is counted in fixed histogram buckets, Prometheus style; an even sample
of each batch (up to 64) feeds a window of ``samples`` values for percentiles.
Wall-clock numbers: they are metrics, never part of the state or its snapshots.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence

import msgspec

__all__ = ["BUCKETS_MS", "FreshnessSummary", "FreshnessTracker"]

# Upper bounds (inclusive, ms) of the histogram buckets; the last bucket is +Inf.
BUCKETS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 60_000)
# Percentiles come from an even sample of each batch, at most this many values.
_SAMPLES_PER_BATCH = 64


class FreshnessSummary(msgspec.Struct, frozen=True, kw_only=True):
    """``buckets`` are (upper bound ms, cumulative count) pairs, the last bound +Inf;
    percentiles come from the recent samples (0 when there are none)."""

    count: int
    sum_ms: int
    buckets: list[tuple[float, int]]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def _percentile(ordered: list[int], q: float) -> float:
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


class FreshnessTracker:
    """A thread-safe histogram of freshness with a window of recent samples."""

    def __init__(self, samples: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(BUCKETS_MS) + 1)
        self._sum = 0
        self._recent: deque[int] = deque(maxlen=samples)

    def observe(self, now_ms: int, received_ms: Sequence[int]) -> None:
        """Events received at ``received_ms`` became visible at ``now_ms``.

        Counted from one sort of the batch: latency <= b exactly for the received times
        >= now - b, so each bucket is one bisection, not one Python step per event.
        """
        if not received_ms:
            return
        ordered = sorted(received_ms)
        n = len(ordered)
        within = [n - bisect_left(ordered, now_ms - bound) for bound in BUCKETS_MS]
        step = max(1, n // _SAMPLES_PER_BATCH)
        sample = [max(0, now_ms - r) for r in ordered[::step]]
        with self._lock:
            below = 0
            for i, cumulative in enumerate(within):
                self._counts[i] += cumulative - below
                below = cumulative
            self._counts[-1] += n - below
            self._sum += max(0, now_ms * n - sum(ordered))
            self._recent.extend(sample)

    def summary(self) -> FreshnessSummary:
        with self._lock:
            counts, total = list(self._counts), self._sum
            ordered = sorted(self._recent)
        cumulative, buckets = 0, []
        for bound, n in zip((*BUCKETS_MS, float("inf")), counts, strict=True):
            cumulative += n
            buckets.append((float(bound), cumulative))
        return FreshnessSummary(
            count=cumulative,
            sum_ms=total,
            buckets=buckets,
            p50_ms=_percentile(ordered, 0.50),
            p90_ms=_percentile(ordered, 0.90),
            p99_ms=_percentile(ordered, 0.99),
            max_ms=float(ordered[-1]) if ordered else 0.0,
        )
