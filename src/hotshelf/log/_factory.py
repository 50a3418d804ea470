"""Opening the configured log backend for a topic."""

from __future__ import annotations

from hotshelf.config import Config
from hotshelf.log._base import EventLog, LogObserver
from hotshelf.log._file_log import FileLog

__all__ = ["open_log"]


def open_log(config: Config, topic: str, *, observer: LogObserver | None = None) -> EventLog:
    """The log for ``topic`` ("events", "catalog") on the backend ``config.log`` names."""
    if config.log.backend == "redis":
        # Imported here so the file backend never needs a Redis client loaded.
        from hotshelf.log._redis_log import RedisStreamLog

        return RedisStreamLog(config.log, topic, observer=observer)
    return FileLog(config.data_path / "log" / topic, config.log, observer=observer)
