"""``FileLog``: the embedded event log, one directory per topic.

Layout::

    <directory>/2026-11-22/16/00000000000000001234.log   frames (``_frame``)
    <directory>/2026-11-22/16/00000000000000001234.idx   sparse index (a hint)
    <directory>/consumers/<group>.offset                  committed offsets
    <directory>/tail                                      where durable records end
    <directory>/.lock                                     one process at a time

Appends go through one writer thread (``_group_commit``); reads see only what it
has synced. On open the tail of every segment is walked from its last good index
entry. A torn tail of the last segment (a frame a crash cut short, or a bad frame
with no good frame after it) is truncated and logged as a warning. Any other damage
is logged as an error, kept in ``recovery.damage`` and raised as ``CorruptLogError``
by reads that reach it, while the records around it stay readable. Damage before
the last index entry of a segment is found by ``verify()`` or by the read that meets
it, not on open, which would otherwise have to read the whole log.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

import structlog

from hotshelf._files import lock_directory
from hotshelf.config import LogConfig
from hotshelf.errors import (
    ConflictError,
    CorruptLogError,
    LogClosedError,
    OffsetOutOfRangeError,
    ValidationError,
)
from hotshelf.log._base import (
    AppendResult,
    EventLog,
    LogConsumer,
    LogObserver,
    LogRecord,
    LogStats,
    VerifyReport,
)
from hotshelf.log._file_consumer import FileLogConsumer
from hotshelf.log._frame import encode_records
from hotshelf.log._group_commit import GroupCommitWriter, LogState
from hotshelf.log._segment import Segment, SegmentCheck, Span
from hotshelf.log._tail import TailWriter

__all__ = ["FileLog", "SegmentView", "check_continuity", "read_across"]

_logger = structlog.get_logger("hotshelf.log")
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_base_offset = attrgetter("base_offset")


class SegmentView(NamedTuple):
    """A segment as one read sees it: readable up to ``size`` bytes and offset ``upper``."""

    segment: Segment
    size: int
    upper: int


def read_across(
    views: Sequence[SegmentView], offset: int, end: int, max_records: int
) -> list[LogRecord]:
    """Up to ``max_records`` records from ``offset`` (below ``end``) across ``views``,
    which start with the segment holding ``offset``; what precedes damage is handed out
    before the damage is raised."""
    out: list[LogRecord] = []
    i = 0
    while i < len(views) and offset < end and len(out) < max_records:
        segment, size, upper = views[i]
        if offset < upper:
            try:
                records = segment.read(offset, max_records - len(out), size, upper)
            except CorruptLogError:
                if out:  # hand out what precedes the damage first
                    break
                raise
            out += records
            if records:
                offset = records[-1].offset + 1
            if offset < upper:  # stopped at damage
                break
        i += 1
    return out


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def check_continuity(before: Segment, after: Segment, event: str = "log.damage_found") -> None:
    """Damage where ``before`` does not end exactly where ``after`` begins."""
    ends = [before.end_offset] + [s.last + 1 for s in before.spans if s.last is not None]
    if max(ends) < after.base_offset:
        span = Span(
            before.size, None, max(ends), after.base_offset - 1, "offsets missing between segments"
        )
    elif before.end_offset > after.base_offset:
        span = Span(
            before.size,
            None,
            after.base_offset,
            before.end_offset - 1,
            f"segment overlaps the next one, {after.path.name}",
        )
    else:
        return
    before.add_span(span, event)


class FileLog(EventLog):
    """The embedded log: hour-partitioned segment files with group-committed appends.

    ``clock`` returns epoch ms and stamps appends (segment rolls, retention by age).
    ``recovery`` reports what opening found: truncated torn tail, damage.
    """

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        *,
        observer: LogObserver | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.config = config
        self._clock = clock or _wall_clock_ms
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(self.directory, "the log")
        try:
            segments, self.recovery = self._recover()
            self._state = LogState(segments)
            self._state.tail = TailWriter(self.directory)
            self._state.publish_tail()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._members: dict[str, FileLogConsumer] = {}
        self._retention_lock = threading.Lock()
        self._writer = GroupCommitWriter(
            self._state, self.directory, config, self._clock, observer or LogObserver()
        )

    # -- opening ---------------------------------------------------------------------

    def _recover(self) -> tuple[list[Segment], VerifyReport]:
        segments = Segment.discover(self.directory)
        interval = self.config.index_interval_bytes
        truncated = 0
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            upper = None if last else segments[i + 1].base_offset
            result = segment.recover(upper, interval, check_all=last)
            if last and result.torn is not None:
                truncated = self._truncate(segment, result.torn)
                result.spans.remove(result.torn)
            self._settle(segment, result)
        for before, after in itertools.pairwise(segments):
            check_continuity(before, after, "log.damage_found_on_open")
        start = segments[0].base_offset if segments else 0
        end = segments[-1].end_offset if segments else 0
        damage = [d for seg in segments for d in seg.damage()]
        lost = sum(d.last_offset - d.first_offset + 1 for d in damage if d.last_offset is not None)
        report = VerifyReport(
            records=end - start - lost,
            segments=len(segments),
            size_bytes=sum(seg.size for seg in segments),
            start_offset=start,
            end_offset=end,
            damage=damage,
            truncated_tail_bytes=truncated,
        )
        return segments, report

    def _truncate(self, segment: Segment, torn: Span) -> int:
        """Cut the last segment before its torn tail; returns the bytes dropped."""
        dropped = segment.size - torn.position
        with open(segment.path, "r+b") as f:
            f.truncate(torn.position)
            if self.config.fsync:
                os.fsync(f.fileno())
        segment.size = torn.position
        _logger.warning(
            "log.torn_tail_truncated",
            path=str(segment.path),
            position=torn.position,
            offset=torn.first,
            bytes=dropped,
            reason=torn.reason,
        )
        return dropped

    def _settle(self, segment: Segment, result: SegmentCheck) -> None:
        """Take what an open-time walk found as the segment's state."""
        segment.end_offset = result.end_offset
        if result.last_ts_ms is not None:
            segment.last_ts_ms = result.last_ts_ms
        else:
            segment.last_ts_ms = int(segment.path.stat().st_mtime * 1000)
        for span in result.spans:
            segment.add_span(span, "log.damage_found_on_open")
        segment.index = result.index
        if result.index[1:] != result.loaded_index or not segment.index_path.exists():
            segment.write_index()

    # -- appending -------------------------------------------------------------------

    def low_watermark_ms(self) -> int:
        """Exact for appends made through this object (the directory lock makes it the
        only writer): see ``GroupCommitWriter.low_watermark_ms``."""
        return self._writer.low_watermark_ms()

    def append(self, values: Sequence[bytes]) -> AppendResult:
        body = encode_records(values)
        return self._writer.submit(body, len(values)).result()

    async def append_async(self, values: Sequence[bytes]) -> AppendResult:
        """``append`` for event loops.

        Cancelled once the writer has taken the batch, the batch is still appended, as
        when a client stops waiting.
        """
        body = encode_records(values)
        return await asyncio.wrap_future(self._writer.submit(body, len(values)))

    # -- reading ---------------------------------------------------------------------

    @property
    def start_offset(self) -> int:
        return self._state.start_offset

    @property
    def end_offset(self) -> int:
        return self._state.end_offset

    def _snapshot(self) -> list[Segment]:
        with self._state.lock:
            if self._state.closed:
                raise LogClosedError("the log is closed")
            return self._state.segments

    def read(self, offset: int, max_records: int = 1000) -> list[LogRecord]:
        if max_records < 1:
            raise ValidationError(f"max_records must be at least 1, not {max_records}")
        segments = self._snapshot()
        start, end = self._state.start_offset, self._state.end_offset
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(f"offset {offset} is outside the log's {start}..{end}")
        # views from the segment holding ``offset`` on (a consumer at the tail: one)
        first = max(bisect_right(segments, offset, key=_base_offset) - 1, 0)
        views = [
            SegmentView(seg, seg.size, nxt.base_offset)
            for seg, nxt in itertools.pairwise(segments[first:])
        ]
        if segments:
            views.append(SegmentView(segments[-1], segments[-1].size, segments[-1].end_offset))
        return read_across(views, offset, end, max_records)

    def wait_for(self, offset: int, timeout_s: float) -> bool:
        """Wait until a record at ``offset`` exists; False on timeout."""
        state = self._state
        with state.lock:
            state.appended.wait_for(lambda: state.end_offset > offset or state.closed, timeout_s)
            if state.closed:
                raise LogClosedError("the log is closed")
            return state.end_offset > offset

    # -- consumers -------------------------------------------------------------------

    def consumer(self, group: str, name: str = "0") -> LogConsumer:
        """The one member of ``group`` this log allows at a time (``ConflictError`` otherwise)."""
        if not _GROUP_NAME.fullmatch(group):
            raise ValidationError(f"bad consumer group name {group!r}: use letters, digits, . _ -")
        with self._state.lock:
            if self._state.closed:
                raise LogClosedError("the log is closed")
            if group in self._members:
                held = self._members[group].name
                raise ConflictError(f"consumer group {group!r} already has a member ({held!r})")
            member = FileLogConsumer(self, group, name, self.directory / "consumers")
            self._members[group] = member
        return member

    def release(self, member: FileLogConsumer) -> None:
        """Forget a closed consumer, so its group can be joined again."""
        with self._state.lock:
            if self._members.get(member.group) is member:
                del self._members[member.group]

    # -- upkeep ----------------------------------------------------------------------

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete whole closed segments past ``retention_hours`` or ``retention_bytes``."""
        with self._retention_lock:
            segments = self._snapshot()
            doomed = segments[: self._expired(segments, now_ms)]
            if not doomed:
                return 0
            state = self._state
            with state.lock:
                old_start = state.start_offset
                # The writer only adds segments at the end, so the prefix is unchanged.
                state.segments = state.segments[len(doomed) :]
                state.start_offset = state.segments[0].base_offset
                state.size_bytes -= sum(seg.size for seg in doomed)
                dropped = state.start_offset - old_start
                state.publish_tail()  # before the files go: a follower reads the start first
            for segment in doomed:
                segment.delete()
        _logger.info(
            "log.retention", directory=str(self.directory), segments=len(doomed), records=dropped
        )
        return dropped

    def _expired(self, segments: list[Segment], now_ms: int | None) -> int:
        """How many of the oldest segments retention drops; never the active one."""
        now_ms = self._clock() if now_ms is None else now_ms
        hours, max_bytes = self.config.retention_hours, self.config.retention_bytes
        closed = segments[:-1]
        k = 0
        if hours is not None:
            cutoff = now_ms - int(hours * 3_600_000)
            while k < len(closed) and closed[k].last_ts_ms < cutoff:
                k += 1
        if max_bytes is not None:
            total = sum(seg.size for seg in segments[k:])
            while k < len(closed) and total > max_bytes:
                total -= closed[k].size
                k += 1
        return k

    def verify(self) -> VerifyReport:
        """Check every frame, record framing, offset continuity and the indexes."""
        segments = self._snapshot()
        records = 0
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            upper = segment.end_offset if last else segments[i + 1].base_offset
            result = segment.check(segment.size, upper, self.config.index_interval_bytes)
            records += result.records
            for span in result.spans:
                segment.add_span(span)
            if not last:
                check_continuity(segment, segments[i + 1])
                self._check_index(segment, result)
        state = self._state
        return VerifyReport(
            records=records,
            segments=len(segments),
            size_bytes=sum(seg.size for seg in segments),
            start_offset=state.start_offset,
            end_offset=state.end_offset,
            damage=[d for seg in segments for d in seg.damage()],
        )

    def _check_index(self, segment: Segment, result: SegmentCheck) -> None:
        positions = result.frame_positions
        if all(positions.get(pos) == off for off, pos in segment.index[1:]):
            return
        _logger.warning("log.index_rebuilt", path=str(segment.index_path))
        segment.index = result.index
        segment.write_index()

    def stats(self) -> LogStats:
        state = self._state
        with state.lock:
            return LogStats(
                start_offset=state.start_offset,
                end_offset=state.end_offset,
                size_bytes=state.size_bytes,
                segments=len(state.segments),
            )

    def close(self) -> None:
        """Write what is queued, stop the writer and release the directory."""
        state = self._state
        with state.lock:
            if state.closed:
                return
            state.closed = True
            state.appended.notify_all()
            members = list(self._members.values())
        self._writer.stop()
        for member in members:
            member.close()
        if self._state.tail is not None:
            self._state.tail.close()
        os.close(self._lock_fd)
