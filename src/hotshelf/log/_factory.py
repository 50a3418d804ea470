"""Opening the configured log backend for a topic."""

from __future__ import annotations

import msgspec

from hotshelf.config import Config, LogConfig
from hotshelf.errors import ConflictError
from hotshelf.log._base import EventLog, LogObserver
from hotshelf.log._file_log import FileLog
from hotshelf.log._follower import LogFollower

__all__ = ["UNTRIMMED_TOPICS", "open_log", "open_reader"]

# Views rebuilt from their whole topic (the catalog): retention would lose live items,
# so these topics ignore the retention settings on both backends.
UNTRIMMED_TOPICS = frozenset({"catalog"})


def _log_config(config: LogConfig, topic: str) -> LogConfig:
    if topic not in UNTRIMMED_TOPICS:
        return config
    return msgspec.structs.replace(
        config, retention_hours=None, retention_bytes=None, redis_maxlen=None
    )


def open_log(
    config: Config, topic: str, *, observer: LogObserver | None = None, follow: bool = False
) -> EventLog:
    """The log for ``topic`` ("events", "catalog") on the backend ``config.log`` names.

    ``follow``: only read it, while another process writes it: a ``LogFollower`` on
    the file backend (no lock taken, nothing written). A Redis stream is shared by
    every process anyway, so there it is the usual log.
    """
    log_config = _log_config(config.log, topic)
    if log_config.backend == "redis":
        # Imported here so the file backend never needs a Redis client loaded.
        from hotshelf.log._redis_log import RedisStreamLog

        return RedisStreamLog(log_config, topic, observer=observer)
    directory = config.data_path / "log" / topic
    if follow:
        return LogFollower(directory, log_config)
    return FileLog(directory, log_config, observer=observer)


def open_reader(config: Config, topic: str) -> tuple[EventLog, bool]:
    """The log for reading only, and whether it is a follower: the log itself when no
    process has it open, else a ``LogFollower`` of the process that does (a live
    server), instead of the ``ConflictError`` opening it would raise."""
    try:
        return open_log(config, topic), False
    except ConflictError:
        if config.log.backend != "file":
            raise
        return open_log(config, topic, follow=True), True
