"""The file log's writer thread: group commit into the active segment.

Appenders queue a batch and wait on a future. The one writer thread takes everything
queued, gives it offsets, writes the frames with one ``writev`` and syncs once for
the whole group; only then does it publish the new end of the log and resolve the
futures. So readers never see data that is not durable, and many concurrent appends
share one ``fdatasync``.

Stamps never go backwards (a wall clock stepped back is held at the last stamp), and
the stamp of the group in flight is known, so ``low_watermark_ms`` can tell readers
in this process exactly which times are settled: no grace period to wait out.

If a write or sync fails the log stops accepting appends (``UnavailableError``):
after a failed sync the kernel may have dropped the dirty pages, so the only safe
way on is to reopen the log, whose recovery truncates whatever was half-written.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import structlog

from hotshelf._files import fsync_directory
from hotshelf.config import LogConfig
from hotshelf.errors import LogClosedError, UnavailableError
from hotshelf.log._base import AppendResult, LogObserver
from hotshelf.log._frame import HEADER_SIZE, encode_frame
from hotshelf.log._segment import Segment
from hotshelf.log._tail import TailWriter

__all__ = ["GroupCommitWriter", "LogState"]

_logger = structlog.get_logger("hotshelf.log")
# Tests replace this to hold a group between its write and its sync.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


class LogState:
    """What the writer publishes and readers snapshot, guarded by ``lock``.

    ``segments`` is replaced, never changed in place, so a snapshot stays valid.
    """

    def __init__(self, segments: list[Segment]) -> None:
        self.lock = threading.Lock()
        self.appended = threading.Condition(self.lock)  # notified after each group
        self.segments = segments
        self.start_offset = segments[0].base_offset if segments else 0
        self.end_offset = segments[-1].end_offset if segments else 0
        self.size_bytes = sum(seg.size for seg in segments)
        self.closed = False
        self.tail: TailWriter | None = None  # the marker for readers in other processes

    def publish_tail(self) -> None:
        """Tell other processes where the durable records are now (under ``lock``)."""
        if self.tail is None:
            return
        last = self.segments[-1] if self.segments else None
        try:
            self.tail.publish(
                self.start_offset,
                self.end_offset,
                self.end_offset if last is None else last.base_offset,
                0 if last is None else last.size,
            )
        except OSError as exc:  # followers lag until the next one; appends go on
            _logger.error("log.tail_not_published", path=str(self.tail.path), error=str(exc))


class _Request:
    __slots__ = ("body", "count", "enqueued", "future")

    def __init__(self, body: bytes, count: int) -> None:
        self.body = body
        self.count = count
        self.enqueued = time.perf_counter()
        self.future: Future[AppendResult] = Future()


class _Active:
    """The segment being written, with its file and index handles."""

    def __init__(self, segment: Segment, written: int, *, new: bool) -> None:
        self.segment = segment
        self.is_new = new  # not yet in the published segment list
        self.written = written  # bytes in the file; ahead of segment.size until synced
        self.last_index_position = segment.index[-1][1]
        self.new_index: list[tuple[int, int]] = []
        self.fd = os.open(segment.path, _OPEN_FLAGS | os.O_CREAT, 0o644)
        self.index_fd = os.open(segment.index_path, _OPEN_FLAGS | os.O_CREAT, 0o644)
        self.parts: list[bytes] = []

    def flush(self, sync: bool) -> None:
        """Write the queued frames, then sync them."""
        parts, self.parts = self.parts, []
        if not parts:
            return
        for i in range(0, len(parts), _IOV_MAX):
            chunk = parts[i : i + _IOV_MAX]
            done = os.writev(self.fd, chunk)
            want = sum(map(len, chunk))
            if done < want:  # short write: finish it from a copy
                rest = memoryview(b"".join(chunk))[done:]
                while rest:
                    rest = rest[os.write(self.fd, rest) :]
        if sync:
            _datasync(self.fd)

    def close(self) -> None:
        fds, self.fd, self.index_fd = (self.fd, self.index_fd), -1, -1
        for fd in fds:
            if fd >= 0:  # never close a number twice: another file may have it by now
                os.close(fd)


class GroupCommitWriter:
    """Owns the active segment; see the module docstring."""

    def __init__(
        self,
        state: LogState,
        directory: Path,
        config: LogConfig,
        clock: Callable[[], int],
        observer: LogObserver,
    ) -> None:
        self._state = state
        self._dir = directory
        self._config = config
        self._clock = clock
        self._observer = observer
        self._wakeup = threading.Condition(state.lock)
        self._pending: list[_Request] = []
        self._stopping = False
        self._failure: str | None = None
        self._active: _Active | None = None
        self._touched: list[_Active] = []  # segments the group in hand writes to
        self._last_ts = max((seg.last_ts_ms or 0 for seg in state.segments), default=0)
        self._in_flight: int | None = None  # the stamp of the group being written
        self._thread = threading.Thread(
            target=self._run, name=f"log-writer:{directory}", daemon=True
        )
        self._thread.start()

    def submit(self, body: bytes, count: int) -> Future[AppendResult]:
        """Queue one encoded batch; the future resolves once it is durable."""
        request = _Request(body, count)
        with self._state.lock:
            if self._stopping:
                raise LogClosedError("the log is closed")
            if self._failure is not None:
                raise UnavailableError(self._failure)
            self._pending.append(request)
            if len(self._pending) == 1:
                self._wakeup.notify()
        return request.future

    def low_watermark_ms(self) -> int:
        """Every record not published yet is (or will be) stamped at or after this."""
        with self._state.lock:
            if self._in_flight is not None:
                return self._in_flight
            return max(self._clock(), self._last_ts)

    def _stamp(self) -> int:
        with self._state.lock:
            self._in_flight = self._last_ts = max(self._clock(), self._last_ts)
            return self._in_flight

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        with self._state.lock:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._state.lock:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                group, self._pending = self._pending, []
            if not group:
                break
            live = [r for r in group if r.future.set_running_or_notify_cancel()]
            if not live:
                continue
            if self._failure is not None:
                self._fail(live, None)
                continue
            try:
                self._commit(live)
            except BaseException as exc:  # noqa: BLE001 - every failure must reach the appenders
                self._fail(live, exc)
        if self._active is not None:
            self._active.close()

    def _fail(self, requests: list[_Request], exc: BaseException | None) -> None:
        with self._state.lock:
            self._in_flight = None  # nothing of this group will ever be published
        if exc is not None:
            self._failure = f"the event log failed to write ({exc!r}); reopen it to recover"
            _logger.error("log.write_failed", directory=str(self._dir), error=repr(exc))
            for active in self._touched:
                # Best effort: take back what was written but never acknowledged, so
                # a reopen does not bring back batches whose appenders got an error.
                with contextlib.suppress(OSError):
                    os.ftruncate(active.fd, 0 if active.is_new else active.segment.size)
                with contextlib.suppress(OSError):
                    active.close()
            self._active = None
        for request in requests:
            if not request.future.done():
                request.future.set_exception(UnavailableError(self._failure or "log failed"))

    def _should_roll(self, active: _Active, ts_ms: int, frame_len: int) -> bool:
        if active.written == 0:
            return False
        if active.written + frame_len > self._config.segment_max_bytes:
            return True
        last = active.segment.last_ts_ms or ts_ms
        if self._config.segment_roll == "hour":
            return ts_ms // _HOUR_MS != last // _HOUR_MS
        if self._config.segment_roll == "day":
            return ts_ms // _DAY_MS != last // _DAY_MS
        return False

    def _commit(self, live: list[_Request]) -> None:
        started = time.perf_counter()
        ts_ms = self._stamp()
        offset = self._state.end_offset  # only this thread moves it
        interval = self._config.index_interval_bytes
        sync = self._config.fsync
        done: list[_Active] = []
        self._touched = done
        active = self._active or self._open_active(offset, ts_ms)
        done.append(active)
        results: list[tuple[_Request, AppendResult]] = []
        total = 0
        for request in live:
            frame_len = HEADER_SIZE + len(request.body)
            if self._should_roll(active, ts_ms, frame_len):
                active.flush(sync)
                active = self._open_active(offset, ts_ms, roll=True)
                done.append(active)
            if active.written - active.last_index_position >= interval:
                active.new_index.append((offset, active.written))
                active.last_index_position = active.written
            active.parts += encode_frame(offset, request.count, ts_ms, request.body)
            results.append((request, AppendResult(offset, offset + request.count - 1)))
            offset += request.count
            active.written += frame_len
            total += frame_len
        active.flush(sync)
        synced = time.perf_counter()
        self._publish(done, offset, ts_ms, total)
        for old in done[:-1]:
            old.close()
        self._touched = []
        for request, result in results:
            request.future.set_result(result)
        self._observe(results, total, synced - started)

    def _publish(self, touched: list[_Active], end: int, ts_ms: int, total: int) -> None:
        for active in touched:
            if active.new_index:
                os.write(active.index_fd, Segment.encode_index(active.new_index))
        state = self._state
        with state.lock:
            for active in touched:
                segment = active.segment
                segment.index.extend(active.new_index)
                active.new_index = []
                segment.size = active.written
                segment.last_ts_ms = ts_ms
            # Each segment ends where the next begins, the last one at the new end.
            for before, after in itertools.pairwise(touched):
                before.segment.end_offset = after.segment.base_offset
            touched[-1].segment.end_offset = end
            new = [a.segment for a in touched if a.is_new]
            if new:
                state.segments = [*state.segments, *new]
                for active in touched:
                    active.is_new = False
            state.end_offset = end
            state.size_bytes += total
            state.publish_tail()
            self._in_flight = None
            state.appended.notify_all()

    def _observe(
        self, results: list[tuple[_Request, AppendResult]], total: int, seconds: float
    ) -> None:
        try:
            self._observer.on_sync(len(results), sum(r.count for r, _ in results), total, seconds)
            now = time.perf_counter()
            for request, _ in results:
                self._observer.on_append(request.count, now - request.enqueued)
        except Exception:  # a broken metric must not stop the log
            _logger.exception("log.observer_failed")

    def _open_active(self, base_offset: int, ts_ms: int, *, roll: bool = False) -> _Active:
        """The segment to append to: the last one at start-up, a new one on a roll."""
        segments = self._state.segments
        if segments and not roll:
            last = segments[-1]
            self._active = _Active(last, last.size, new=False)
            return self._active
        segment = Segment(Segment.path_for(self._dir, base_offset, ts_ms), base_offset)
        segment.last_ts_ms = ts_ms
        self._make_dirs(segment.path.parent)
        self._active = _Active(segment, 0, new=True)
        if self._config.fsync:
            fsync_directory(segment.path.parent)
        return self._active

    def _make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            if self._config.fsync:
                fsync_directory(path.parent)
