"""Prometheus metrics for the service, the log and (through ``watch_stream``) the stream.

Each ``Metrics`` owns its registry, so several apps (tests) never collide in the
process-wide default one. Labelled children are cached per (route, method, status):
``labels()`` costs a lock and a dict lookup that the hot path does not need to repeat.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from hotshelf.log import LogObserver, LogStats
from hotshelf.monitoring._gc_pauses import GcPauseCollector
from hotshelf.monitoring._stream_metrics import StreamCollector, StreamSource

__all__ = ["CONTENT_TYPE", "Metrics", "PrometheusLogObserver"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request latency: loopback acks are sub-millisecond, fsync'd ones a few ms.
_LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_RECORD_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)


class Metrics:
    """Every series hotshelf exports, in one private registry."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        labels = ("route", "method", "status")
        self.requests = Counter(
            "hotshelf_http_requests", "HTTP requests answered.", labels, registry=reg
        )
        self.request_seconds = Histogram(
            "hotshelf_http_request_duration_seconds",
            "Time from request start to the last byte of the answer.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.events_accepted = Counter(
            "hotshelf_events_accepted", "Events durably appended to the log.", registry=reg
        )
        self.events_duplicate = Counter(
            "hotshelf_events_duplicate",
            "Events acknowledged but not stored again (event_id seen in the dedup window).",
            registry=reg,
        )
        self.impressions_unlogged = Counter(
            "hotshelf_recommend_impressions_unlogged",
            "Served recommendation lists whose impression event could not be appended.",
            registry=reg,
        )
        self.event_requests_rejected = Counter(
            "hotshelf_event_requests_rejected",
            "POST /v1/events requests rejected (nothing appended), by error code.",
            ("reason",),
            registry=reg,
        )
        self.log_append_seconds = Histogram(
            "hotshelf_log_append_duration_seconds",
            "Time for one append to become durable.",
            ("topic",),
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.log_sync_batches = Histogram(
            "hotshelf_log_sync_batches",
            "Appends made durable by one sync (group-commit batch size).",
            ("topic",),
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.log_sync_records = Histogram(
            "hotshelf_log_sync_records",
            "Records made durable by one sync.",
            ("topic",),
            buckets=_RECORD_BUCKETS,
            registry=reg,
        )
        self.log_sync_seconds = Histogram(
            "hotshelf_log_sync_duration_seconds",
            "Time for one write + sync.",
            ("topic",),
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.log_sync_bytes = Counter(
            "hotshelf_log_sync_bytes", "Bytes written by syncs.", ("topic",), registry=reg
        )
        self.log_size_bytes = Gauge(
            "hotshelf_log_size_bytes", "Bytes the log keeps on disk.", ("topic",), registry=reg
        )
        self.log_end_offset = Gauge(
            "hotshelf_log_end_offset", "Offset the next record will get.", ("topic",), registry=reg
        )
        self.log_start_offset = Gauge(
            "hotshelf_log_start_offset", "Oldest offset still kept.", ("topic",), registry=reg
        )
        if process:
            ProcessCollector(registry=reg)
            reg.register(GcPauseCollector())
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._stream: StreamCollector | None = None

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request; ``route`` is the template, never the raw path."""
        if method not in _METHODS:
            method = "other"  # clients choose the method: keep the label set bounded
        key = (route, method, status)
        pair = self._children.get(key)
        if pair is None:
            labels = (route, method, str(status))
            pair = (self.requests.labels(*labels), self.request_seconds.labels(*labels))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def watch_log(self, topic: str, stats: Callable[[], LogStats]) -> None:
        """Report the size and offsets of a log at scrape time."""

        def field(name: str) -> Callable[[], float]:
            def read() -> float:
                try:
                    return float(getattr(stats(), name))
                except Exception:  # noqa: BLE001 - a closed log must not break a scrape
                    return float("nan")

            return read

        self.log_size_bytes.labels(topic).set_function(field("size_bytes"))
        self.log_end_offset.labels(topic).set_function(field("end_offset"))
        self.log_start_offset.labels(topic).set_function(field("start_offset"))

    def watch_stream(self, source: Callable[[], StreamSource | None]) -> None:
        """Report the stream processor ``source()`` returns (None: none running) at scrape
        time: freshness, lag per topic, bot counts, table sizes."""
        if self._stream is None:
            self._stream = StreamCollector(source)
            self.registry.register(self._stream)
        else:
            self._stream.source = source

    def observer(self, topic: str) -> PrometheusLogObserver:
        """A ``LogObserver`` feeding this registry for ``topic``."""
        return PrometheusLogObserver(self, topic)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)


class PrometheusLogObserver(LogObserver):
    """Feeds append latency and group-commit sizes into ``Metrics`` (thread-safe)."""

    def __init__(self, metrics: Metrics, topic: str) -> None:
        self._append = metrics.log_append_seconds.labels(topic)
        self._batches = metrics.log_sync_batches.labels(topic)
        self._records = metrics.log_sync_records.labels(topic)
        self._sync = metrics.log_sync_seconds.labels(topic)
        self._bytes = metrics.log_sync_bytes.labels(topic)

    def on_append(self, records: int, seconds: float) -> None:
        self._append.observe(seconds)

    def on_sync(self, batches: int, records: int, bytes_: int, seconds: float) -> None:
        self._batches.observe(batches)
        self._records.observe(records)
        self._sync.observe(seconds)
        self._bytes.inc(bytes_)
