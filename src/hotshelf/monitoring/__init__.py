"""Metrics (Prometheus) and structured logs (structlog) for the service, the log and the
stream processor."""

from hotshelf.monitoring._logging import configure_logging, get_logger
from hotshelf.monitoring._metrics import CONTENT_TYPE, Metrics, PrometheusLogObserver
from hotshelf.monitoring._stream_metrics import StreamCollector, StreamSource

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "PrometheusLogObserver",
    "StreamCollector",
    "StreamSource",
    "configure_logging",
    "get_logger",
]
