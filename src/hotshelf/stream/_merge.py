"""Reading the events and catalog topics as one deterministic sequence.

Records of both topics are taken in order of their log ``timestamp_ms``, a catalog
record first when the times tie, each topic in offset order. A replay therefore sees
every catalog change at the same point among the events as the first pass did, so
an event's item -> category lookup gives the same answer.

The one hard case is a catalog record that is not readable yet: an append stamps
its time before it becomes durable and visible. An event is taken only once the
catalog topic has a record stamped later, or has been read to its end with no record
stamped before the event's stamp still on its way. A log that knows its in-flight
stamps (the file log, whose one writer is this process: ``low_watermark_ms``) says
so exactly; for others (Redis, written by other processes) the topic must have been
read to its end more than ``grace_ms`` after the event's stamp (an append that takes
longer than the grace could, in a replay, land before events it was taken after; keep
the grace above the log's worst append latency).

Redelivered records (offsets already buffered or applied) are dropped here, so the
processor never applies a record twice; a record past a gap makes the consumer seek
back to the first one missing, so none is skipped (unless retention deleted it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice, repeat
from operator import attrgetter, call

import structlog

from hotshelf.log import EventLog, LogConsumer, LogRecord

__all__ = ["Source", "TopicMerge"]

_logger = structlog.get_logger("hotshelf.stream")
_stamp = attrgetter("timestamp_ms")


class Source:
    """One topic's consumer and the records read from it but not applied yet.

    ``quiet_ms`` is the latest time a poll found nothing new: every record this topic
    did not hand out by then is stamped at or after ``quiet_ms - grace_ms`` (at or
    after ``quiet_ms`` itself when the log reports a low watermark).
    """

    def __init__(
        self,
        topic: str,
        log: EventLog,
        consumer: LogConsumer,
        next_offset: int,
        clock: Callable[[], int],
    ) -> None:
        self.topic = topic
        self.consumer = consumer
        self._log = log
        self.next_offset = next_offset  # the next record to apply: all below are in state
        self.buffer: deque[LogRecord] = deque()
        self.quiet_ms: int | None = None
        self.redelivered = 0
        self._buffered_to = next_offset
        self._clock = clock
        self._exact = log.low_watermark_ms() is not None  # no grace needed

    @property
    def end_offset(self) -> int:
        """The offset the topic's next append will get."""
        return self._log.end_offset

    def poll(self, max_records: int, timeout_s: float = 0.0) -> int:
        """Buffer up to ``max_records`` new records; returns how many were new."""
        # Asked before the poll: whatever the poll does not return was not published
        # yet then, so it is stamped at or after this.
        asked = self._log.low_watermark_ms() if self._exact else None
        if asked is None:
            asked = self._clock()
        records = self.consumer.poll(max_records, timeout_s)
        if not records:
            self.quiet_ms = asked
            return 0
        start = self._buffered_to
        if records[0].offset == start and records[-1].offset == start + len(records) - 1:
            self.buffer.extend(records)  # the usual case: the next contiguous batch
            self._buffered_to = start + len(records)
            return len(records)
        fresh = 0
        for record in records:
            if record.offset < self._buffered_to:
                self.redelivered += 1
                continue
            if record.offset > self._buffered_to and not self._lost_to_retention():
                # Out of order: ask again from the first record missing, never skip it.
                self.consumer.seek(self._buffered_to)
                break
            self.buffer.append(record)
            self._buffered_to = record.offset + 1
            fresh += 1
        return fresh

    def _lost_to_retention(self) -> bool:
        start = self._log.start_offset
        if self._buffered_to >= start:
            return False
        _logger.warning(
            "stream.behind_retention", topic=self.topic, expected=self._buffered_to, start=start
        )
        self._buffered_to = start
        return True

    def settled_before(self, grace_ms: int) -> int | None:
        """Records of this topic not buffered yet are stamped at or after this."""
        if self.quiet_ms is None:
            return None
        return self.quiet_ms if self._exact else self.quiet_ms - grace_ms

    def take(self, count: int) -> list[LogRecord]:
        """Remove the first ``count`` buffered records; they count as applied."""
        # popleft ``count`` times in C: a Python loop here costs ~2% of processing
        taken = list(map(call, repeat(self.buffer.popleft, count)))
        self.next_offset = taken[-1].offset + 1
        return taken


def _leading_before(buffer: deque[LogRecord], limit_ms: int, most: int) -> int:
    """How many records at the front of ``buffer`` are stamped before ``limit_ms``."""
    front = list(islice(buffer, most))
    # Usually all of them: found in C, without a Python step per record.
    if front and max(map(_stamp, front)) < limit_ms:
        return len(front)
    n = 0
    for record in buffer:
        if n >= most or record.timestamp_ms >= limit_ms:
            break
        n += 1
    return n


class TopicMerge:
    """Runs of event records and catalog records, in the one order every replay sees."""

    def __init__(self, events: Source, catalog: Source, grace_ms: int) -> None:
        self.events = events
        self.catalog = catalog
        self._grace_ms = grace_ms
        self.waiting = False  # records are buffered but must wait out the grace

    def take(self, limit: int) -> list[tuple[bool, list[LogRecord]]]:
        """Up to ``limit`` records as runs of ``(is_catalog, records)``, in merge order."""
        runs: list[tuple[bool, list[LogRecord]]] = []
        events, catalog = self.events, self.catalog
        taken, polled = 0, set()
        self.waiting = False
        while taken < limit:
            if events.buffer and catalog.buffer:
                head_ms = catalog.buffer[0].timestamp_ms
                n = _leading_before(events.buffer, head_ms, limit - taken)
                if n:
                    runs.append((False, events.take(n)))
                else:  # the catalog records up to the first event's stamp (a tie is theirs)
                    first_ms = events.buffer[0].timestamp_ms
                    n = _leading_before(catalog.buffer, first_ms + 1, limit - taken)
                    runs.append((True, catalog.take(n)))
                taken += n
                continue
            if events.buffer:  # take events no catalog record still on its way precedes
                mine, other, bound = events, catalog, catalog.settled_before(self._grace_ms)
                n = 0 if bound is None else _leading_before(events.buffer, bound, limit - taken)
            elif catalog.buffer:  # catalog records go once no event can precede them
                mine, other, bound = catalog, events, events.settled_before(self._grace_ms)
                # stamped at or before the bound: before bound + 1 (stamps are whole ms)
                n = (
                    0
                    if bound is None
                    else _leading_before(catalog.buffer, bound + 1, most=limit - taken)
                )
            elif catalog.topic not in polled:  # nothing buffered: has the catalog anything?
                if not catalog.poll(limit):
                    polled.add(catalog.topic)
                continue
            else:
                break
            if n:
                runs.append((mine is catalog, mine.take(n)))
                taken += n
            elif other.topic not in polled:
                # It may have more by now, or have been quiet for long enough: look until
                # it has nothing new (then its quiet time is fresh).
                if not other.poll(limit):
                    polled.add(other.topic)
            else:
                self.waiting = True
                break
        return runs
