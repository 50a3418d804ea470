"""``LogFollower``: a file log read from another process while its writer runs.

A ``FileLog`` belongs to one process (its directory lock), so before followers a live
server's log could not even be inspected: ``hotshelf log inspect`` was told the log
"is open elsewhere". A follower takes no lock and writes nothing. It reads the
segment files up to the writer's tail marker (``_tail``): every record it returns is
durable, in offset order, checked frame by frame as the writer's own reads are, and
it never sees a frame being written.

* ``read``, ``start_offset``, ``end_offset``, ``stats`` and ``verify`` work as on the
  writer's ``FileLog``; each read first reads the marker (one ``pread``).
* ``wait_for`` polls the marker (every ``poll_s``, 2 ms by default) until a record
  arrives: a follower is told nothing by the writer. Each poll is one ``pread`` and a
  sleep; a follower waiting on an idle log uses ~1-2% of a core.
* ``consumer`` gives groups of the follower's own, in memory: they start at the
  start of the log, and ``commit`` moves only the follower's position (the writer's
  committed offsets belong to the writer's consumers).
* ``append`` raises ``ConflictError``: the writer is another process. Retention is the
  writer's too: a record it drops is ``OffsetOutOfRangeError`` here, as there.
* ``low_watermark_ms`` is None, as for any log whose writer is elsewhere: stream
  readers wait out their grace period.

Segments are found by listing the directory when the marker names a last segment the
follower has not seen, and kept (with their read hints) until retention drops them.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_right
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

from hotshelf.config import LogConfig
from hotshelf.errors import (
    ConflictError,
    LogClosedError,
    OffsetOutOfRangeError,
    ValidationError,
)
from hotshelf.log._base import (
    AppendResult,
    EventLog,
    LogConsumer,
    LogRecord,
    LogStats,
    VerifyReport,
    check_commit,
    poll_at,
)
from hotshelf.log._file_log import SegmentView, check_continuity, read_across
from hotshelf.log._segment import Segment
from hotshelf.log._tail import Tail, TailReader

__all__ = ["LogFollower"]

POLL_S = 0.002
_base_offset = attrgetter("base_offset")


class LogFollower(EventLog):
    """A read-only view of the file log in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path, config: LogConfig, *, poll_s: float = POLL_S) -> None:
        self.directory = Path(directory)
        self.config = config
        self._poll_s = poll_s
        self._tail = TailReader(self.directory)
        self._tail_lock = threading.Lock()
        self._lock = threading.Lock()
        self._segments: list[Segment] = []  # oldest first, up to the marker's last
        self._final_sizes: dict[int, int] = {}  # closed segments' sizes, by base offset
        self._indexed_at: dict[int, int] = {}  # the size each segment's index was read at
        self._closed = threading.Event()

    # -- the writer's published view ---------------------------------------------------

    def tail(self) -> Tail:
        """The writer's latest marker (``LogClosedError`` once this follower is closed)."""
        with self._tail_lock:  # close() must not close the file under a read
            if self._closed.is_set():
                raise LogClosedError("the follower is closed")
            return self._tail.read()

    @property
    def start_offset(self) -> int:
        return self.tail().start

    @property
    def end_offset(self) -> int:
        return self.tail().end

    def _views(self, tail: Tail, offset: int | None = None) -> list[SegmentView]:
        """The segments holding ``offset..tail.end`` (from ``tail.start`` by default),
        each readable as far as the marker says: the last to its published size, closed
        ones to their whole file."""
        with self._lock:
            segments = self._segments
            if not segments or segments[-1].base_offset != tail.last_base:
                known = {seg.base_offset: seg for seg in segments}
                segments = [
                    known.get(seg.base_offset, seg)
                    for seg in Segment.discover(self.directory)
                    if seg.base_offset <= tail.last_base  # newer ones are not published yet
                ]
            # retention dropped what ends at or before the start
            first = 0
            while first + 1 < len(segments) and segments[first + 1].base_offset <= tail.start:
                first += 1
            for dropped in segments[:first]:
                self._final_sizes.pop(dropped.base_offset, None)
                self._indexed_at.pop(dropped.base_offset, None)
            self._segments = segments = segments[first:]
            views: list[SegmentView] = []
            at = tail.start if offset is None else offset
            skip = max(bisect_right(segments, at, key=_base_offset) - 1, 0)
            for i in range(skip, len(segments)):
                segment = segments[i]
                last = i == len(segments) - 1
                size = tail.last_size if last else self._final_size(segment)
                upper = tail.end if last else segments[i + 1].base_offset
                self._refresh_index(segment, size)
                views.append(SegmentView(segment, size, upper))
            return views

    def _final_size(self, segment: Segment) -> int:
        """A closed segment's size: the writer never touches it again."""
        size = self._final_sizes.get(segment.base_offset)
        if size is None:
            try:
                size = os.stat(segment.path).st_size
            except FileNotFoundError:
                size = 0  # dropped by retention since: reads of it are out of range
            self._final_sizes[segment.base_offset] = size
        return size

    def _refresh_index(self, segment: Segment, size: int) -> None:
        """Read the writer's sparse index again once the segment grew by an interval,
        so a read far into it does not walk every frame from the start."""
        segment.size = size
        if size - self._indexed_at.get(segment.base_offset, 0) < self.config.index_interval_bytes:
            return
        self._indexed_at[segment.base_offset] = size
        segment.index = [(segment.base_offset, 0), *segment.load_index()]

    # -- reading -----------------------------------------------------------------------

    def read(self, offset: int, max_records: int = 1000) -> list[LogRecord]:
        if max_records < 1:
            raise ValidationError(f"max_records must be at least 1, not {max_records}")
        tail = self.tail()
        if not tail.start <= offset <= tail.end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside the log's {tail.start}..{tail.end}"
            )
        return read_across(self._views(tail, offset), offset, tail.end, max_records)

    def wait_for(self, offset: int, timeout_s: float) -> bool:
        """Wait until a record at ``offset`` exists; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.tail().end <= offset:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self._poll_s, left))  # cheaper than an Event's wait, per poll
        return True

    def consumer(self, group: str, name: str = "0") -> LogConsumer:
        """A member of a group of this follower's own (in memory; see module docstring)."""
        return _FollowerConsumer(self, group, name)

    # -- what the writer does ------------------------------------------------------------

    def append(self, values: Sequence[bytes]) -> AppendResult:
        raise ConflictError(
            f"the log in {self.directory} is written by another process; a follower only reads"
        )

    async def append_async(self, values: Sequence[bytes]) -> AppendResult:
        return self.append(values)

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Nothing: retention is the writer's."""
        return 0

    # -- upkeep ------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check every frame and the offsets' continuity up to the marker (the writer's
        indexes are not rewritten: they are the writer's)."""
        tail = self.tail()
        views = self._views(tail)
        records = 0
        for i, (segment, size, upper) in enumerate(views):
            result = segment.check(size, upper, self.config.index_interval_bytes)
            records += result.records
            segment.end_offset = result.end_offset
            for span in result.spans:
                segment.add_span(span)
            if i + 1 < len(views):
                check_continuity(segment, views[i + 1].segment)
        return VerifyReport(
            records=records,
            segments=len(views),
            size_bytes=sum(view.size for view in views),
            start_offset=tail.start,
            end_offset=tail.end,
            damage=[d for view in views for d in view.segment.damage()],
        )

    def stats(self) -> LogStats:
        tail = self.tail()
        views = self._views(tail)
        return LogStats(
            start_offset=tail.start,
            end_offset=tail.end,
            size_bytes=sum(view.size for view in views),
            segments=len(views),
        )

    def close(self) -> None:
        with self._tail_lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._tail.close()


class _FollowerConsumer(LogConsumer):
    """A group member of a follower: the position and the commit live in memory."""

    def __init__(self, log: LogFollower, group: str, name: str) -> None:
        self.group = group
        self.name = name
        self._log = log
        self._committed = 0
        self._position = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"consumer {self.group}/{self.name} is closed")

    def poll(self, max_records: int = 1000, timeout_s: float = 0.0) -> list[LogRecord]:
        self._check_open()
        tail = self._log.tail()
        # into the log's range: retention moved the start, or a reopened writer cut a
        # damaged tail that new records will take the offsets of
        position = self._position = min(max(self._position, tail.start), tail.end)
        log = self._log
        records = poll_at(position, tail.end, log.read, log.wait_for, max_records, timeout_s)
        if records:
            self._position = records[-1].offset + 1
        return records

    def commit(self, next_offset: int) -> None:
        self._check_open()
        check_commit(next_offset, self._log.end_offset)
        self._committed = next_offset

    def committed(self) -> int:
        return self._committed

    def seek(self, offset: int) -> None:
        self._check_open()
        tail = self._log.tail()
        if not tail.start <= offset <= tail.end:
            raise OffsetOutOfRangeError(
                f"cannot seek to {offset}: the log holds {tail.start}..{tail.end}"
            )
        self._position = offset

    def close(self) -> None:
        self._closed = True
