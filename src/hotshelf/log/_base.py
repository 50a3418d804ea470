"""The event log interface.

A log is an append-only sequence of opaque byte records addressed by dense integer
offsets starting at 0. ``append`` takes a batch and returns only once the whole batch
is durable (all or nothing: a crash never leaves half a batch readable). Consumers
read from an offset, and consumer groups remember how far they got (``commit`` takes
the *next* offset to process, as Kafka does).

Two implementations share one contract test suite (``tests/log/test_contract.py``):
``FileLog`` (embedded, the default) and ``RedisStreamLog`` (Redis Streams).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import msgspec

from hotshelf._closing import Closeable
from hotshelf.errors import (
    FieldProblem,
    OffsetOutOfRangeError,
    PayloadTooLargeError,
    ValidationError,
)

__all__ = [
    "MAX_RECORD_BYTES",
    "AppendResult",
    "Damage",
    "EventLog",
    "LogConsumer",
    "LogObserver",
    "LogRecord",
    "LogStats",
    "VerifyReport",
    "check_batch",
]

# Largest record either backend accepts; a bigger one raises PayloadTooLargeError.
MAX_RECORD_BYTES = 1024 * 1024


def check_batch(values: Sequence[bytes]) -> None:
    """Raise the error a backend gives for a bad batch: empty, non-bytes or oversized records."""
    if not values:
        raise ValidationError("an append needs at least one record")
    problems: list[FieldProblem] = []
    too_big = False
    for i, value in enumerate(values):
        kind: type = type(value)  # callers are not all type-checked
        if kind is not bytes and kind is not bytearray:
            problems.append(FieldProblem(f"$[{i}]", f"must be bytes, not {type(value).__name__}"))
        elif len(value) > MAX_RECORD_BYTES:
            too_big = True
            problems.append(
                FieldProblem(f"$[{i}]", f"{len(value)} bytes is over the {MAX_RECORD_BYTES} limit")
            )
    if problems:
        error = PayloadTooLargeError if too_big else ValidationError
        raise error(f"{len(problems)} bad record(s) in the batch", problems)


class LogRecord(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One record: its offset, when the log accepted it (epoch ms), and its bytes.

    ``gc=False``: it holds ints and bytes only, so it can never be part of a cycle, and
    a consumer makes one per record (tracked, they set off half the stream processor's
    young-generation collections).
    """

    offset: int
    timestamp_ms: int
    value: bytes


class AppendResult(msgspec.Struct, frozen=True):
    """Offsets given to an appended batch: ``first_offset`` .. ``last_offset`` inclusive."""

    first_offset: int
    last_offset: int

    @property
    def count(self) -> int:
        return self.last_offset - self.first_offset + 1


class Damage(msgspec.Struct, frozen=True):
    """A stretch of the log that cannot be read.

    ``first_offset``/``last_offset`` bound the offsets lost (``last_offset`` is None
    when it cannot be known); ``position`` is the byte position in ``path``.
    """

    path: str
    position: int
    first_offset: int
    last_offset: int | None
    reason: str


class VerifyReport(msgspec.Struct):
    """What ``verify`` found: ``ok`` is True only when every record checks out."""

    records: int
    segments: int
    size_bytes: int
    start_offset: int
    end_offset: int
    damage: list[Damage] = msgspec.field(default_factory=list)
    truncated_tail_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.damage


class LogStats(msgspec.Struct, frozen=True):
    start_offset: int
    end_offset: int
    size_bytes: int
    segments: int


class LogObserver:
    """Hooks a backend calls as it works; the no-op defaults are overridden by metrics.

    Called from the log's own threads: implementations must be quick and thread-safe.
    """

    def on_append(self, records: int, seconds: float) -> None:
        """One ``append`` call of ``records`` records became durable ``seconds`` after it began."""

    def on_sync(self, batches: int, records: int, bytes_: int, seconds: float) -> None:
        """One group commit: ``batches`` appends written with one sync, taking ``seconds``."""


def poll_at(
    position: int,
    end: int,
    read: Callable[[int, int], list[LogRecord]],
    wait_for: Callable[[int, float], bool],
    max_records: int,
    timeout_s: float,
) -> list[LogRecord]:
    """A file consumer's poll from ``position`` (the log ends at ``end``): up to
    ``max_records`` records, waiting up to ``timeout_s`` for the first when none are
    there yet."""
    if position >= end and (timeout_s <= 0 or not wait_for(position, timeout_s)):
        return []
    return read(position, max_records)


def check_commit(next_offset: int, end: int) -> None:
    """``OffsetOutOfRangeError`` unless ``next_offset`` is within ``0..end``."""
    if not 0 <= next_offset <= end:
        raise OffsetOutOfRangeError(f"cannot commit offset {next_offset}: the log ends at {end}")


class LogConsumer(abc.ABC):
    """A member of a consumer group reading the log in offset order.

    ``poll`` hands out records the group has not committed, starting with records this
    member had been given but not committed before a restart; ``commit(next_offset)``
    marks every record below ``next_offset`` that this member was given as processed.
    """

    @abc.abstractmethod
    def poll(self, max_records: int = 1000, timeout_s: float = 0.0) -> list[LogRecord]:
        """Up to ``max_records`` records; waits up to ``timeout_s`` when none are ready."""

    @abc.abstractmethod
    def commit(self, next_offset: int) -> None:
        """Durably record that every record below ``next_offset`` is processed."""

    @abc.abstractmethod
    def committed(self) -> int:
        """The next offset this group will process (0 when it has committed nothing)."""

    @abc.abstractmethod
    def seek(self, offset: int) -> None:
        """Restart delivery at ``offset`` (replay); does not change the commit."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release resources held by this consumer."""


class EventLog(Closeable):
    """An append-only, checksummed, replayable log of byte records."""

    @abc.abstractmethod
    def append(self, values: Sequence[bytes]) -> AppendResult:
        """Append a non-empty batch; returns once all of it is durable."""

    @abc.abstractmethod
    async def append_async(self, values: Sequence[bytes]) -> AppendResult:
        """``append`` for event loops: awaits durability without blocking the loop."""

    @abc.abstractmethod
    def read(self, offset: int, max_records: int = 1000) -> list[LogRecord]:
        """Records from ``offset`` on (fewer, or none at the end).

        Raises ``OffsetOutOfRangeError`` below ``start_offset`` or past ``end_offset``,
        and ``CorruptLogError`` when the records asked for are damaged.
        """

    @property
    @abc.abstractmethod
    def start_offset(self) -> int:
        """The oldest offset still kept (retention moves it forward)."""

    @property
    @abc.abstractmethod
    def end_offset(self) -> int:
        """The offset the next appended record will get."""

    @abc.abstractmethod
    def consumer(self, group: str, name: str = "0") -> LogConsumer:
        """A member ``name`` of consumer group ``group``."""

    def low_watermark_ms(self) -> int | None:
        """A time every record not readable yet will be stamped at or after, or None.

        A reader that asks for it, then polls and finds nothing new, knows no record
        stamped before it is still on its way. None when this log cannot know (its
        writers may be other processes): readers then wait out a grace period.
        """
        return None

    @abc.abstractmethod
    def apply_retention(self, now_ms: int | None = None) -> int:
        """Drop records past the configured age/size; returns how many were dropped."""

    @abc.abstractmethod
    def verify(self) -> VerifyReport:
        """Check every record's checksum and the offsets' continuity."""

    @abc.abstractmethod
    def stats(self) -> LogStats:
        """Cheap size figures for metrics."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release; later calls raise ``LogClosedError``."""
