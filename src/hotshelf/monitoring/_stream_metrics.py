"""Stream processor metrics, read from the processor when Prometheus scrapes.

Nothing is counted twice: the processor keeps its own freshness histogram, lag, bot
counts and table sizes, and ``StreamCollector`` turns them into metric families at
scrape time. It reads a source through a callable that answers None while no
processor runs (starting, stopping, failed), so a scrape then just leaves them out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from hotshelf.monitoring._logging import get_logger

if TYPE_CHECKING:
    from hotshelf.stream import FreshnessSummary

__all__ = ["StreamCollector", "StreamSource"]

_logger = get_logger("hotshelf.monitoring")
_REASON = "reason:"
# processor.stats() keys that count up (exported as counters); see _sizes for the rest
_COUNTERS = {
    "skipped": ("hotshelf_stream_records_skipped", "Records that did not decode (skipped)."),
    "redelivered": (
        "hotshelf_stream_records_redelivered",
        "Records the log delivered again and the processor dropped.",
    ),
    "ip_capped": (
        "hotshelf_stream_ip_capped",
        "Visitors not counted in trends because their IP hash reached its cap.",
    ),
    "spike_clipped": (
        "hotshelf_stream_spike_clipped",
        "New visitors not counted in trends by the spike guard.",
    ),
}


class StreamSource(Protocol):
    """What the collector reads (``hotshelf.stream.StreamProcessor``)."""

    def freshness_summary(self, lane: str = ...) -> FreshnessSummary: ...

    def lane_lag(self) -> dict[str, int]: ...

    def lag(self) -> dict[str, int]: ...

    def bot_stats(self) -> dict[str, int]: ...

    def stats(self) -> dict[str, int]: ...


class StreamCollector:
    """A Prometheus collector over the stream processor that ``source()`` returns."""

    def __init__(self, source: Callable[[], StreamSource | None]) -> None:
        self.source = source

    def describe(self) -> Iterable[Metric]:
        """The families' names, so a registry can refuse a clash."""
        return [
            HistogramMetricFamily("hotshelf_stream_freshness_seconds", "", labels=("lane",)),
            GaugeMetricFamily("hotshelf_stream_lag_records", ""),
        ]

    def collect(self) -> Iterable[Metric]:
        source = self.source()
        if source is None:
            return []
        try:
            return [
                *_freshness({lane: source.freshness_summary(lane) for lane in source.lane_lag()}),
                _lag(source.lag()),
                *_bots(source.bot_stats()),
                *_stats(source.stats()),
            ]
        except Exception:  # a failing source must not break the scrape
            _logger.exception("metrics.stream_failed")
            return []


def _le(bound_ms: float) -> str:
    """A bucket's upper bound in ms as Prometheus writes it in seconds ("0.005", "+Inf")."""
    return "+Inf" if math.isinf(bound_ms) else repr(bound_ms / 1000)


def _freshness(lanes: Mapping[str, FreshnessSummary]) -> Iterator[Metric]:
    """Per lane ("rt" live, "batch" imports): the histogram, and recent percentiles."""
    histogram = HistogramMetricFamily(
        "hotshelf_stream_freshness_seconds",
        "Time from an event's acknowledgement to its being visible in the stream state.",
        labels=("lane",),
    )
    recent = GaugeMetricFamily(
        "hotshelf_stream_freshness_recent_seconds",
        "Percentiles of the freshness of recent events (a sample of each batch).",
        labels=("lane", "quantile"),
    )
    for lane, summary in lanes.items():
        buckets = [(_le(bound), count) for bound, count in summary.buckets]
        histogram.add_metric((lane,), buckets, summary.sum_ms / 1000)
        for q, ms in (("0.5", summary.p50_ms), ("0.9", summary.p90_ms),
                      ("0.99", summary.p99_ms), ("1", summary.max_ms)):  # fmt: skip
            recent.add_metric((lane, q), ms / 1000)
    yield histogram
    yield recent


def _lag(lag: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "hotshelf_stream_lag_records",
        "Records a topic holds that the stream state does not reflect yet.",
        labels=("topic",),
    )
    for topic, n in sorted(lag.items()):
        family.add_metric((topic,), n)
    return family


def _bots(stats: Mapping[str, int]) -> Iterator[Metric]:
    if not stats:
        return  # the bot filter is off
    yield CounterMetricFamily(
        "hotshelf_stream_bot_events_checked",
        "Events the bot filter checked.",
        value=stats.get("checked", 0),
    )
    yield CounterMetricFamily(
        "hotshelf_stream_bot_events_flagged",
        "Events the bot filter flagged (kept out of trends).",
        value=stats.get("flagged", 0),
    )
    reasons = CounterMetricFamily(
        "hotshelf_stream_bot_events_flagged_by_reason",
        "Flagged events per reason (an event may have several).",
        labels=("reason",),
    )
    for key, n in sorted(stats.items()):
        if key.startswith(_REASON):
            reasons.add_metric((key[len(_REASON) :],), n)
    yield reasons


def _stats(stats: Mapping[str, int]) -> Iterator[Metric]:
    """Counters, the last snapshot's duration, and every other key as a table size."""
    sizes = GaugeMetricFamily(
        "hotshelf_stream_table_entries",
        "Entries in each of the stream state's bounded tables.",
        labels=("table",),
    )
    for key, value in sorted(stats.items()):
        if key.startswith("lag_"):
            continue  # hotshelf_stream_lag_records has it
        if key in _COUNTERS:
            name, doc = _COUNTERS[key]
            yield CounterMetricFamily(name, doc, value=value)
        elif key == "snapshot_ms":
            yield GaugeMetricFamily(
                "hotshelf_stream_snapshot_duration_seconds",
                "How long the last snapshot took to write.",
                value=value / 1000,
            )
        else:
            sizes.add_metric((key,), value)
    yield sizes
