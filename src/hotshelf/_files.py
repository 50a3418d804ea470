"""Durable-file helpers shared by the stores that keep data on disk (the file log, the
memory-mapped embedding tier, the embedding job's manifest)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hotshelf.errors import ConflictError

__all__ = ["fsync_directory", "lock_directory", "write_atomically"]


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (a created or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes | memoryview, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` whole: a crash leaves the old file or the new one.

    With ``fsync`` the new file and the rename are on disk when this returns.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    tmp.replace(path)
    if fsync:
        fsync_directory(path.parent)


def lock_directory(directory: Path, what: str) -> int:
    """An exclusive lock on ``directory`` (held while the returned fd is open), so two
    processes never write one store; ``ConflictError`` naming ``what`` if it is taken."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    if sys.platform != "win32":
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConflictError(f"{what} in {directory} is open elsewhere") from None
    return fd
