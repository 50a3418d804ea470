"""Consumer groups of the file log.

The embedded log serves one member per group at a time (a second live member gets
``ConflictError``): it has no broker to split work between members, and one process
reads as fast as the disk does. The committed offset of a group is one small file,
``consumers/<group>.offset``, replaced atomically (write, sync, rename) on commit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from hotshelf._files import fsync_directory
from hotshelf.errors import CorruptLogError, LogClosedError, OffsetOutOfRangeError
from hotshelf.log._base import LogConsumer, LogRecord, check_commit, poll_at

if TYPE_CHECKING:
    from hotshelf.log._file_log import FileLog

__all__ = ["FileLogConsumer"]

_logger = structlog.get_logger("hotshelf.log")


class FileLogConsumer(LogConsumer):
    """A group's member: polls from an in-memory position that starts at the commit.

    Use one from one thread at a time, as with any consumer.
    """

    def __init__(self, log: FileLog, group: str, name: str, directory: Path) -> None:
        self.group = group
        self.name = name
        self._log = log
        self._path = directory / f"{group}.offset"
        self._closed = False
        self._committed = self._load()
        self._position = self._committed

    def _load(self) -> int:
        try:
            text = self._path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        try:
            return int(text.strip())
        except ValueError:
            raise CorruptLogError(
                f"committed offset file {self._path} is unreadable: {text[:40]!r}",
                path=str(self._path),
                first=0,
                last=None,
            ) from None

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"consumer {self.group}/{self.name} is closed")

    def _clamped_position(self) -> int:
        """The position, moved into the log's range if the log changed under it."""
        start, end = self._log.start_offset, self._log.end_offset
        if self._position < start:
            _logger.warning(
                "log.consumer_behind_retention",
                group=self.group,
                position=self._position,
                start_offset=start,
                lost=start - self._position,
            )
            self._position = start
        elif self._position > end:
            # The tail it had read was cut off (a torn or damaged last frame):
            # new records will take those offsets, and this group must see them.
            _logger.warning(
                "log.consumer_past_end", group=self.group, position=self._position, end_offset=end
            )
            self._position = end
        return self._position

    def poll(self, max_records: int = 1000, timeout_s: float = 0.0) -> list[LogRecord]:
        self._check_open()
        log = self._log
        position = self._clamped_position()
        records = poll_at(
            position, log.end_offset, log.read, log.wait_for, max_records, timeout_s
        )
        if records:
            self._position = records[-1].offset + 1
        return records

    def commit(self, next_offset: int) -> None:
        self._check_open()
        check_commit(next_offset, self._log.end_offset)
        directory = self._path.parent
        fresh = not directory.exists()
        directory.mkdir(exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{next_offset}\n")
            f.flush()
            if self._log.config.fsync:
                os.fsync(f.fileno())
        tmp.replace(self._path)
        if self._log.config.fsync:
            fsync_directory(directory)
            if fresh:
                fsync_directory(directory.parent)
        self._committed = next_offset

    def committed(self) -> int:
        return self._committed

    def seek(self, offset: int) -> None:
        self._check_open()
        start, end = self._log.start_offset, self._log.end_offset
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(f"cannot seek to {offset}: the log holds {start}..{end}")
        self._position = offset

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._log.release(self)
