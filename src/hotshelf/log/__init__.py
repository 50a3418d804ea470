"""The durable, checksummed, replayable event log and its two backends."""

from hotshelf.log._base import (
    AppendResult,
    Damage,
    EventLog,
    LogConsumer,
    LogRecord,
    LogStats,
    VerifyReport,
)

__all__ = [
    "AppendResult",
    "Damage",
    "EventLog",
    "LogConsumer",
    "LogRecord",
    "LogStats",
    "VerifyReport",
]
