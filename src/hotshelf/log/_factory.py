"""Opening the configured log backend for a topic."""

from __future__ import annotations

import msgspec

from hotshelf.config import Config, LogConfig
from hotshelf.log._base import EventLog, LogObserver
from hotshelf.log._file_log import FileLog

__all__ = ["UNTRIMMED_TOPICS", "open_log"]

# Views rebuilt from their whole topic (the catalog): retention would lose live items,
# so these topics ignore the retention settings on both backends.
UNTRIMMED_TOPICS = frozenset({"catalog"})


def _log_config(config: LogConfig, topic: str) -> LogConfig:
    if topic not in UNTRIMMED_TOPICS:
        return config
    return msgspec.structs.replace(
        config, retention_hours=None, retention_bytes=None, redis_maxlen=None
    )


def open_log(config: Config, topic: str, *, observer: LogObserver | None = None) -> EventLog:
    """The log for ``topic`` ("events", "catalog") on the backend ``config.log`` names."""
    log_config = _log_config(config.log, topic)
    if log_config.backend == "redis":
        # Imported here so the file backend never needs a Redis client loaded.
        from hotshelf.log._redis_log import RedisStreamLog

        return RedisStreamLog(log_config, topic, observer=observer)
    return FileLog(config.data_path / "log" / topic, log_config, observer=observer)
