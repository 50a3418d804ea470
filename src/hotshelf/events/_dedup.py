"""Dropping events the log already holds, by ``event_id``, within a time window.

Clients retry: after a timeout, or after the server crashed between the append and
the answer. The window remembers recent ids so a retried batch is acknowledged
without being stored twice, and it is rebuilt from the tail of the log at startup so
this holds across restarts.

Ids are *reserved* by ``filter`` and *confirmed* once the append is durable (or
*released* when it fails): two concurrent requests carrying the same id cannot both
append it, and a failed append does not make its ids look stored.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import msgspec

from hotshelf.errors import ConflictError, CorruptLogError, OffsetOutOfRangeError

if TYPE_CHECKING:  # the log package needs nothing from here; keep imports one-way
    from hotshelf.log import EventLog, LogRecord

__all__ = ["DedupWindow", "HasEventId"]

_REBUILD_CHUNK: Final = 4096


class HasEventId(Protocol):
    @property
    def event_id(self) -> str: ...


E = TypeVar("E", bound=HasEventId)


class _IdOnly(msgspec.Struct, array_like=True):
    """The first column of a stored event: enough to rebuild the window cheaply."""

    event_id: str


_id_decoder = msgspec.msgpack.Decoder(_IdOnly)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DedupWindow:
    """Event ids seen in the last ``window_s`` seconds, at most ``max_ids`` of them.

    Memory is bounded: past ``max_ids`` the oldest ids are forgotten first. Not
    thread-safe: one window per event loop, used from that loop only.
    """

    def __init__(self, window_s: float, max_ids: int) -> None:
        if window_s < 0 or max_ids < 1:
            raise ValueError("window_s must be >= 0 and max_ids >= 1")
        self.window_ms = round(window_s * 1000)
        self.max_ids = max_ids
        self._seen: dict[str, int] = {}  # id -> when it was confirmed (epoch ms)
        self._order: deque[str] = deque()  # confirmed ids, oldest first
        self._pending: set[str] = set()  # reserved by requests still appending

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    @property
    def pending(self) -> int:
        """How many ids are reserved by appends still in flight."""
        return len(self._pending)

    def filter(self, events: Sequence[E], *, now_ms: int | None = None) -> tuple[list[E], int]:
        """Events not seen before, reserved; and how many were duplicates.

        Repeats inside ``events`` count as duplicates too (the first one is kept).
        Raises ``ConflictError`` (nothing reserved) when an id is reserved by another
        request whose append is still in flight: the client should retry.
        """
        self._expire(_now_ms() if now_ms is None else now_ms)
        seen, pending = self._seen, self._pending
        ids = [event.event_id for event in events]
        batch = set(ids)
        # The common case, all new and distinct, in set operations that run in C.
        if len(batch) == len(ids) and seen.keys().isdisjoint(batch) and pending.isdisjoint(batch):
            pending |= batch
            return list(events), 0
        fresh: list[E] = []
        batch.clear()
        busy: list[str] = []
        for event, eid in zip(events, ids, strict=True):
            if eid in seen or eid in batch:
                continue
            if eid in pending:
                busy.append(eid)
                continue
            batch.add(eid)
            fresh.append(event)
        if busy:
            shown = ", ".join(busy[:5]) + (" ..." if len(busy) > 5 else "")
            raise ConflictError(
                f"{len(busy)} event id(s) are being written by a concurrent request "
                f"({shown}); retry the request"
            )
        pending |= batch
        return fresh, len(events) - len(fresh)

    def confirm(self, events: Iterable[HasEventId], *, now_ms: int | None = None) -> None:
        """The reserved events are durably stored: remember them for the window."""
        now = _now_ms() if now_ms is None else now_ms
        seen = self._seen
        ids = [event.event_id for event in events]
        self._pending.difference_update(ids)
        new = [eid for eid in ids if eid not in seen]
        seen.update(dict.fromkeys(new, now))
        self._order.extend(new)
        self._trim()

    def release(self, events: Iterable[HasEventId]) -> None:
        """The append of reserved events failed: forget the reservations."""
        pending = self._pending
        for event in events:
            pending.discard(event.event_id)

    def remember(self, event_id: str, seen_ms: int) -> None:
        """Add one stored id directly (ids must come oldest first)."""
        if event_id not in self._seen:
            self._seen[event_id] = seen_ms
            self._order.append(event_id)
            self._trim()

    def rebuild(self, log: EventLog, *, now_ms: int | None = None) -> int:
        """Reload the ids stored in the window from the tail of ``log``; returns how many.

        Reads backwards in offset ranges until records are older than the window or
        ``max_ids`` are found, then adds them oldest first.
        """
        now = _now_ms() if now_ms is None else now_ms
        cutoff = now - self.window_ms
        chunks: list[list[LogRecord]] = []
        found = 0
        end, floor = log.end_offset, log.start_offset
        while end > floor and found < self.max_ids:
            begin = max(floor, end - _REBUILD_CHUNK)
            records = _read_range(log, begin, end)
            chunks.append(records)
            found += len(records)
            if records and records[0].timestamp_ms < cutoff:
                break
            end = begin
        before = len(self._seen)
        for records in reversed(chunks):
            for record in records:
                if record.timestamp_ms < cutoff:
                    continue
                try:
                    eid = _id_decoder.decode(record.value).event_id
                except msgspec.DecodeError:
                    continue  # not an event record; nothing to de-duplicate
                self.remember(eid, record.timestamp_ms)
        self._expire(now)
        return len(self._seen) - before

    def _expire(self, now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        seen, order = self._seen, self._order
        while order and seen[order[0]] < cutoff:
            del seen[order.popleft()]

    def _trim(self) -> None:
        seen, order = self._seen, self._order
        while len(order) > self.max_ids:
            del seen[order.popleft()]


def _read_range(log: EventLog, begin: int, end: int) -> list[LogRecord]:
    """Records in ``[begin, end)``, skipping any damaged stretch inside it."""
    out: list[LogRecord] = []
    offset = begin
    while offset < end:
        try:
            records = log.read(offset, end - offset)
        except CorruptLogError as exc:
            if exc.first > offset:
                out.extend(_read_range(log, offset, min(exc.first, end)))
            if exc.last is None:
                break
            offset = exc.last + 1
            continue
        except OffsetOutOfRangeError:
            break  # retention moved the start forward while we read
        if not records:
            break
        out.extend(r for r in records if r.offset < end)
        offset = records[-1].offset + 1
    return out
