"""The durable, checksummed, replayable event log and its two backends."""

from hotshelf.log._base import (
    MAX_RECORD_BYTES,
    AppendResult,
    Damage,
    EventLog,
    LogConsumer,
    LogObserver,
    LogRecord,
    LogStats,
    VerifyReport,
)
from hotshelf.log._factory import open_log, open_reader
from hotshelf.log._file_log import FileLog
from hotshelf.log._follower import LogFollower

__all__ = [
    "MAX_RECORD_BYTES",
    "AppendResult",
    "Damage",
    "EventLog",
    "FileLog",
    "LogConsumer",
    "LogFollower",
    "LogObserver",
    "LogRecord",
    "LogStats",
    "VerifyReport",
    "open_log",
    "open_reader",
]
