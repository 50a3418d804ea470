"""Precomputed candidate lists within a memory budget, invalidated by events.

Two kinds of list are kept: per visitor (their collaborative-filtering candidates,
under the model version that made them) and per segment (generic candidates for a
location x device). Neither has a TTL. A visitor's list is dropped when an event of
that visitor is seen (``invalidate_visitor``) or the model changes; a segment's list
remembers the stream offsets of the state it was built from and the segment it came
from (itself, or a roll-up when the segment alone had too few items), and is stale
once an event of that segment at or past those offsets has been seen
(``note_event``). A visitor's list is never older than the events that could change
it. A stale segment list is still handed out while it is younger than the caller's
``max_age_ms`` (marked stale, so the caller has it rebuilt off the request): under a
live clickstream every segment is stale again within milliseconds of a rebuild, and
rebuilding per request was a capacity cliff (see ``Recommender._generic``).

Lists are kept as tuples of candidates, which the cyclic GC does not track
(``Candidate`` is ``gc=False``): it stops tracking such a tuple at its first collection,
and entries are not tracked either, so thousands of kept lists add nothing to a full
collection's pause. As tracked lists, a serving process's ~3,000 kept lists made its
full collections visit ~150k candidates, 15-40 ms of pause each.

The budget counts each entry's ids and scores (``ENTRY_OVERHEAD`` plus per item);
the least recently used entries go first. A miss costs one list computation, the
same work the precomputation does, so a cold cache changes latency by a bounded
amount and never the answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING

import msgspec
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from hotshelf.monitoring import get_logger
from hotshelf.recommend._blend import Candidate

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["CacheStats", "KeptSegment", "ListCache", "ListCacheCollector"]

_logger = get_logger("hotshelf.recommend")

# Bytes per cached entry and per candidate in it (ids ~40 B, the struct, the key).
ENTRY_OVERHEAD = 400
CANDIDATE_BYTES = 120


class CacheStats(msgspec.Struct):
    """Counters of one cache: ``hits`` and ``misses`` of both kinds of list, and of
    those the visitors' (the rest are the segments')."""

    entries: int
    bytes: int
    budget_bytes: int
    hits: int
    misses: int
    invalidations: int
    evictions: int
    visitor_hits: int = 0
    visitor_misses: int = 0


Segment = tuple[str | None, str | None]


class _Entry(msgspec.Struct, gc=False):  # strings, ints and untracked tuples and dict: no cycle
    candidates: tuple[Candidate, ...]
    version: str  # visitors: the model version that made the list
    built_at: dict[str, int]  # segments: per topic, the next offset its state reflected
    segment: Segment  # segments: the (possibly wider) segment the list came from
    size: int
    built_ms: int = 0  # segments: when the list was built (epoch ms)


class KeptSegment(msgspec.Struct, frozen=True):
    """A segment's kept list: ``stale`` once an event it does not reflect was seen."""

    candidates: tuple[Candidate, ...]
    stale: bool
    built_ms: int


class ListCache:
    """LRU lists under ``budget_bytes``; thread-safe."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._seen: dict[tuple[str, Segment], int] = {}  # (topic, segment) -> last offset
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = self._misses = self._invalidations = self._evictions = 0
        self._visitor_hits = self._visitor_misses = 0

    @staticmethod
    def entry_bytes(candidates: int) -> int:
        """What an entry of ``candidates`` counts against the budget."""
        return ENTRY_OVERHEAD + CANDIDATE_BYTES * candidates

    def visitor_list(
        self, visitor: str, version: str, *, count: bool = True
    ) -> tuple[Candidate, ...] | None:
        """The visitor's list made by model ``version``, or None (a miss); ``count=False``
        looks without counting a hit or a miss (precomputation)."""
        return self._get(("v", visitor), lambda entry: entry.version != version, count=count)

    def segment_list(
        self, location: str | None, device: str | None, now_ms: int, max_age_ms: int
    ) -> KeptSegment | None:
        """The segment's generic list, stale or not while built less than ``max_age_ms``
        ago; None (a miss) when absent, or stale and older."""
        key = ("s", location, device)
        with self._lock:
            entry = self._entries.get(key)
            stale = entry is not None and self._segment_stale(entry)
            if entry is None or (stale and now_ms - entry.built_ms >= max_age_ms):
                if entry is not None:
                    self._drop(key)
                    self._invalidations += 1
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return KeptSegment(entry.candidates, stale, entry.built_ms)

    def put_visitor(self, visitor: str, version: str, candidates: Sequence[Candidate]) -> None:
        self._put(("v", visitor), candidates, version=version)

    def put_segment(
        self,
        location: str | None,
        device: str | None,
        candidates: Sequence[Candidate],
        *,
        built_at: dict[str, int],
        source: Segment,
        built_ms: int,
    ) -> None:
        """Keep a segment's list built at ``built_ms`` from state reflecting offsets below
        ``built_at``, taken from segment ``source`` (itself or a wider one)."""
        key = ("s", location, device)
        self._put(key, candidates, built_at=built_at, segment=source, built_ms=built_ms)

    def invalidate_visitor(self, visitor: str) -> None:
        """Drop the list kept for ``visitor``."""
        with self._lock:
            if ("v", visitor) in self._entries:
                self._drop(("v", visitor))
                self._invalidations += 1

    def note_event(self, topic: str, offset: int, location: str | None, device: str | None) -> None:
        """An event at ``offset`` of ``topic`` touched the segment and its roll-ups."""
        with self._lock:
            for segment in ((location, device), (location, None), (None, device), (None, None)):
                key = (topic, segment)
                if self._seen.get(key, -1) < offset:
                    self._seen[key] = offset

    def _get(
        self, key: Hashable, stale: Callable[[_Entry], bool], *, count: bool = True
    ) -> tuple[Candidate, ...] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or stale(entry):
                if entry is not None:
                    self._drop(key)
                    self._invalidations += 1
                self._misses += count
                self._visitor_misses += count  # only visitors' lists are looked up here
                return None
            self._entries.move_to_end(key)
            self._hits += count
            self._visitor_hits += count
            return entry.candidates

    def _put(
        self,
        key: Hashable,
        candidates: Sequence[Candidate],
        *,
        version: str = "",
        built_at: dict[str, int] | None = None,
        segment: Segment = (None, None),
        built_ms: int = 0,
    ) -> None:
        size = self.entry_bytes(len(candidates))
        with self._lock:
            if key in self._entries:
                self._drop(key)  # even when the new list is not kept: the old one is stale
            if size > self.budget_bytes:
                return
            entry = _Entry(tuple(candidates), version, built_at or {}, segment, size, built_ms)
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self.budget_bytes:
                self._drop(next(iter(self._entries)))
                self._evictions += 1

    def _segment_stale(self, entry: _Entry) -> bool:
        return any(
            self._seen.get((topic, entry.segment), -1) >= offset
            for topic, offset in entry.built_at.items()
        )

    def _drop(self, key: Hashable) -> None:
        self._bytes -= self._entries.pop(key).size

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                entries=len(self._entries),
                bytes=self._bytes,
                budget_bytes=self.budget_bytes,
                hits=self._hits,
                misses=self._misses,
                invalidations=self._invalidations,
                evictions=self._evictions,
                visitor_hits=self._visitor_hits,
                visitor_misses=self._visitor_misses,
            )


class ListCacheCollector:
    """``hotshelf_recommend_list_cache_*``: lookups per kind of list (``visitor``,
    ``segment``) and outcome, invalidations, evictions, entries and bytes against the
    budget, read from ``stats`` at scrape time."""

    def __init__(self, stats: Callable[[], CacheStats]) -> None:
        self._stats = stats

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def describe(self) -> list[Metric]:
        return list(_cache_families(None))

    def collect(self) -> list[Metric]:
        try:
            return list(_cache_families(self._stats()))
        except Exception:  # a failing source must not break the scrape
            _logger.exception("metrics.list_cache_failed")
            return []


def _cache_families(stats: CacheStats | None) -> Iterator[Metric]:
    lookups = CounterMetricFamily(
        "hotshelf_recommend_list_cache_lookups",
        "Kept-list lookups by requests, per kind of list and outcome (a miss computes it).",
        labels=("kind", "outcome"),
    )
    invalidations = CounterMetricFamily(
        "hotshelf_recommend_list_cache_invalidations",
        "Kept lists dropped because an event or a new model made them stale.",
    )
    evictions = CounterMetricFamily(
        "hotshelf_recommend_list_cache_evictions",
        "Kept lists dropped to stay within the memory budget.",
    )
    entries = GaugeMetricFamily("hotshelf_recommend_list_cache_entries", "Lists kept now.")
    size = GaugeMetricFamily(
        "hotshelf_recommend_list_cache_bytes", "What the kept lists count against the budget."
    )
    budget = GaugeMetricFamily(
        "hotshelf_recommend_list_cache_budget_bytes", "The kept lists' memory budget."
    )
    if stats is not None:
        visitors = (stats.visitor_hits, stats.visitor_misses)
        segments = (stats.hits - visitors[0], stats.misses - visitors[1])
        for kind, (hits, misses) in (("visitor", visitors), ("segment", segments)):
            lookups.add_metric((kind, "hit"), hits)
            lookups.add_metric((kind, "miss"), misses)
        invalidations.add_metric((), stats.invalidations)
        evictions.add_metric((), stats.evictions)
        entries.add_metric((), stats.entries)
        size.add_metric((), stats.bytes)
        budget.add_metric((), stats.budget_bytes)
    yield from (lookups, invalidations, evictions, entries, size, budget)
