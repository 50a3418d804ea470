"""Prometheus families for a ``TwoTierStore``, read from its ``stats()`` at scrape time.

Nothing is counted twice: the store keeps plain integers under its own lock (one lock
per request, no Prometheus call on the hot path) and ``StoreCollector`` turns them
into ``hotshelf_embedding_store_*`` families when the registry is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["COUNTERS", "GAUGES", "StoreCollector"]

_PREFIX = "hotshelf_embedding_store_"

COUNTERS: dict[str, str] = {
    "requests": "Reads of the embedding store (requests with at least one key).",
    "keys": "Keys asked for.",
    "local_hits": "Keys found in the local tier.",
    "full_local_hits": "Requests whose keys were all in the local tier.",
    "remote_reads": "Remote reads issued: one per request whatever the hit ratio.",
    "remote_errors": "Remote reads that failed (error, timeout, server down).",
    "remote_skipped": "Requests that issued no remote read: every in-flight slot was busy.",
    "deadline_misses": "Requests with a local miss that stopped waiting for the remote.",
    "degraded_requests": "Requests answered by the local tier alone in degraded mode.",
}
GAUGES: dict[str, str] = {
    "in_flight": "Remote reads in flight.",
    "degraded": "1 while the last remote read failed or could not be issued, else 0.",
    "local_keys": "Vectors in the local tier.",
    "refresh_backlog": "Remote answers waiting to be applied to the local tier.",
}
# Counted by the local tier and its refresher.
_LOCAL_COUNTERS: dict[str, str] = {
    "local_evictions": "Vectors the local tier evicted to admit more frequent ones.",
    "local_rejections": "Vectors the local tier refused: less frequent than their victim.",
    "refreshes_dropped": "Remote answers not applied to the local tier: the backlog was full.",
}


class StoreCollector:
    """A Prometheus collector over a store's ``stats()``."""

    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        """The families' names, so a registry can refuse a clash."""
        return self._families(dict.fromkeys([*COUNTERS, *_LOCAL_COUNTERS, *GAUGES], 0))

    def collect(self) -> Iterable[Metric]:
        return self._families(self._stats())

    @staticmethod
    def _families(stats: Mapping[str, int]) -> list[Metric]:
        families: list[Metric] = [
            CounterMetricFamily(_PREFIX + name, text, value=stats[name])
            for name, text in (COUNTERS | _LOCAL_COUNTERS).items()
        ]
        families += [
            GaugeMetricFamily(_PREFIX + name, text, value=stats[name])
            for name, text in GAUGES.items()
        ]
        return families
