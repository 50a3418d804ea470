"""Metrics (Prometheus) and structured logs (structlog) for the service and the log."""

from hotshelf.monitoring._logging import configure_logging, get_logger
from hotshelf.monitoring._metrics import CONTENT_TYPE, Metrics, PrometheusLogObserver

__all__ = ["CONTENT_TYPE", "Metrics", "PrometheusLogObserver", "configure_logging", "get_logger"]
