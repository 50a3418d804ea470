"""How long the cyclic garbage collector stops the process, per generation.

A collection holds the GIL from start to end: every request in flight waits for it. A
full collection walks every tracked object outside the frozen start-up state, so a
serving process that keeps many tracked containers (lists of candidates, rankings)
pays for them on every request that meets a full collection: that showed up as 15-45 ms
p99 outliers before the kept lists became untracked tuples. This histogram is how an
operator sees such pauses: ``hotshelf_gc_pause_seconds{generation}``.

One ``gc.callbacks`` hook per process (installed by the first ``GcPauseCollector``),
whatever the number of registries: it times each collection (two clock reads and a
bisect, under the GIL the collector already holds) into shared bucket counts, which
every collector reports at scrape time.
"""

from __future__ import annotations

import bisect
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["GC_PAUSE_BUCKETS", "GcPauseCollector"]

GC_PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_GENERATIONS = 3


class _Pauses:
    """Bucket counts and summed seconds per generation (the last bucket is +Inf)."""

    def __init__(self) -> None:
        self.buckets = [[0] * (len(GC_PAUSE_BUCKETS) + 1) for _ in range(_GENERATIONS)]
        self.seconds = [0.0] * _GENERATIONS
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        # collections never nest and run under the GIL: no lock is needed here
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.buckets[generation][bisect.bisect_left(GC_PAUSE_BUCKETS, took)] += 1
        self.seconds[generation] += took


_pauses: _Pauses | None = None
_install_lock = threading.Lock()


def _installed() -> _Pauses:
    global _pauses
    with _install_lock:
        if _pauses is None:
            _pauses = _Pauses()
            gc.callbacks.append(_pauses)
        return _pauses


class GcPauseCollector(Collector):
    """Reports the process's collection pauses (``hotshelf_gc_pause_seconds``)."""

    def __init__(self) -> None:
        self._pauses = _installed()

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "hotshelf_gc_pause_seconds",
            "Time the cyclic garbage collector held the process, per generation.",
            labels=("generation",),
        )
        bounds = [str(b) for b in GC_PAUSE_BUCKETS] + ["+Inf"]
        for generation in range(_GENERATIONS):
            counts = list(self._pauses.buckets[generation])
            seconds = self._pauses.seconds[generation]
            cumulative, running = [], 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, running))
            family.add_metric([str(generation)], cumulative, seconds)
        yield family
