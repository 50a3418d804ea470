"""``RedisStreamConsumer``: a member of a Redis consumer group over a ``RedisStreamLog``.

``poll`` hands out, first to last:

1. this member's own pending entries (``XREADGROUP ... 0``): what it was given and
   did not commit before a restart is redelivered;
2. after ``seek(offset)``, a replay read with XRANGE from ``offset`` up to what the
   group had handed out at the time, so a replay never takes records away from
   other members and the group's own delivery is left as it was;
3. entries other members left idle longer than ``redis_claim_idle_ms`` (a dead
   member's work), claimed with ``XPENDING IDLE`` + ``XCLAIM`` in one script, which
   is XAUTOCLAIM minus this member's own entries (a slow member must not be handed
   its own unfinished records a second time);
4. new entries (``XREADGROUP ... >``), blocking up to ``timeout_s``.

``commit(n)`` acknowledges every entry this member holds below ``n`` (its pending
list, so records given before a restart count too), moves the group past any record
below ``n`` not yet handed out (``XGROUP SETID``), and stores ``n`` as the group's
committed offset, all in one script. With several members, ``committed()`` is what
the last of them committed. ``seek`` above the group's position moves the group
forward the same way (nothing there was handed out to anyone yet).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import redis
import structlog

from hotshelf.errors import LogClosedError, OffsetOutOfRangeError, ValidationError
from hotshelf.log._base import LogConsumer, LogRecord
from hotshelf.log._redis_log import (
    LUA_PRELUDE,
    SOCKET_TIMEOUT_S,
    decode_entry,
    map_redis_errors,
)

if TYPE_CHECKING:
    from hotshelf.log._redis_log import RedisStreamLog

__all__ = ["RedisStreamConsumer"]

_logger = structlog.get_logger("hotshelf.log")
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # as the file log's
# Longest single XREADGROUP BLOCK: well inside the socket timeout.
_BLOCK_SLICE_S = SOCKET_TIMEOUT_S / 4

# KEYS: stream. ARGV: group, consumer, cursor, count. This member's pending entries
# after cursor; those trimmed away meanwhile are acknowledged (they cannot be
# processed any more) and skipped. Returns {last id seen or '', entries}.
_OWN_PENDING = """
local rows = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
                        'STREAMS', KEYS[1], ARGV[3])
local out, last = {}, ''
if not rows or #rows == 0 then return {last, out} end
for _, e in ipairs(rows[1][2]) do
  last = e[1]
  if e[2] then out[#out + 1] = e else redis.call('XACK', KEYS[1], ARGV[1], e[1]) end
end
return {last, out}
"""

# KEYS: stream. ARGV: group, consumer, min idle ms, cursor, count. Claims entries of
# other members idle for min idle ms. Returns {next cursor or '', entries}.
_CLAIM = """
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local page = redis.call('XPENDING', stream, group, 'IDLE', ARGV[3], ARGV[4], '+', ARGV[5])
local ids = {}
for _, p in ipairs(page) do
  if p[2] ~= me then ids[#ids + 1] = p[1] end
end
local cursor = ''
if #page == tonumber(ARGV[5]) then cursor = '(' .. page[#page][1] end
if #ids == 0 then return {cursor, {}} end
local got, seen = redis.call('XCLAIM', stream, group, me, ARGV[3], unpack(ids)), {}
local out = {}
for _, e in ipairs(got) do
  -- Redis 6.2 answers nil for an entry trimmed away, 7.x leaves it out
  if e and e[2] then seen[e[1]] = true; out[#out + 1] = e end
end
for _, id in ipairs(ids) do
  if not seen[id] then redis.call('XACK', stream, group, id) end
end
return {cursor, out}
"""

# Lua helpers on top of LUA_PRELUDE: the group's position, and moving it forward.
_GROUP_LUA = LUA_PRELUDE + """
-- offset after the last entry handed out to the group
local function handed_out(stream, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    if g[2] == group then
      for i = 1, #g, 2 do
        if g[i] == 'last-delivered-id' then return select(2, pid(g[i + 1])) end
      end
    end
  end
  return 0
end
-- hand out nothing below offset to the group from now on (XGROUP SETID just below
-- the entry at offset, or at the log's end)
local function skip_to(stream, meta, group, offset)
  if handed_out(stream, group) >= offset then return end
  local ms = locate(stream, offset)
  if not ms then
    local nxt, last = state(stream, meta)
    ms, offset = last, math.min(offset, nxt)
  end
  redis.call('XGROUP', 'SETID', stream, group, sid(ms, offset))
end
"""

# KEYS: stream, meta, commits. ARGV: group, consumer, next offset. Acknowledges this
# member's pending entries below next offset (IDs sort by offset: the walk stops at
# the first one above), moves the group past records committed without having been
# handed out, and records the group's committed offset. Returns {done, end offset}:
# nothing is done for an offset past the end.
_COMMIT = _GROUP_LUA + """
local stream, group, me, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local nxt = state(stream, KEYS[2])
if limit > nxt then return {0, nxt} end
while true do
  local page = redis.call('XPENDING', stream, group, '-', '+', 500, me)
  local ids, done = {}, #page < 500
  for _, p in ipairs(page) do
    local _, seq = pid(p[1])
    if seq > limit then done = true; break end
    ids[#ids + 1] = p[1]
  end
  if #ids > 0 then redis.call('XACK', stream, group, unpack(ids)) end
  if done or #ids == 0 then break end
end
skip_to(stream, KEYS[2], group, limit)
redis.call('HSET', KEYS[3], group, ARGV[3])
return {1, nxt}
"""

# KEYS: stream, meta. ARGV: group, offset. Returns the offset after the last entry
# handed out to the group, after moving it up to offset if it was below.
_SEEK = _GROUP_LUA + """
local before = handed_out(KEYS[1], ARGV[1])
skip_to(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
return before
"""


class RedisStreamConsumer(LogConsumer):
    """Member ``name`` of consumer group ``group``; see the module docstring."""

    def __init__(self, log: RedisStreamLog, group: str, name: str) -> None:
        if not _GROUP_NAME.fullmatch(group):
            raise ValidationError(f"bad consumer group name {group!r}: use letters, digits, . _ -")
        if not name:
            raise ValidationError("a consumer group member needs a name")
        self._log = log
        self._client = log.client
        self._stream = log.stream_key
        self.group = group
        self.name = name
        self._pending_cursor: str | None = "0"  # None once the backlog is redelivered
        self._replay: tuple[int, int] | None = None  # (next offset, end) after a seek
        self._claim_cursor = "-"
        self._claim_idle_ms = max(1, log.config.redis_claim_idle_ms)
        self._next_claim = 0.0
        self._closed = False
        self._own_pending = self._client.register_script(_OWN_PENDING)
        self._claim = self._client.register_script(_CLAIM)
        self._commit = self._client.register_script(_COMMIT)
        self._seek = self._client.register_script(_SEEK)
        with map_redis_errors("creating a consumer group"):
            try:
                self._client.xgroup_create(self._stream, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    def poll(self, max_records: int = 1000, timeout_s: float = 0.0) -> list[LogRecord]:
        self._check_open()
        if max_records < 1:
            raise ValidationError("max_records must be at least 1")
        with map_redis_errors("poll"):
            for source in (self._poll_pending, self._poll_replay, self._poll_claimed):
                records = source(max_records)
                if records:
                    return records
            return self._poll_new(max_records, timeout_s)

    def _poll_pending(self, count: int) -> list[LogRecord]:
        while self._pending_cursor is not None:
            last, rows = self._own_pending(
                keys=[self._stream], args=[self.group, self.name, self._pending_cursor, count]
            )
            if not last:
                self._pending_cursor = None
            else:
                self._pending_cursor = last.decode()
                if rows:
                    return self._decode(rows)
        return []

    def _poll_replay(self, count: int) -> list[LogRecord]:
        if self._replay is None:
            return []
        offset, end = self._replay
        try:
            records = self._log.read(offset, min(count, end - offset)) if offset < end else []
        except OffsetOutOfRangeError:
            start = self._log.start_offset
            if offset >= start:
                raise
            # retention went past the replay: go on from what is left
            _logger.warning(
                "log.consumer_behind_retention",
                group=self.group, position=offset, start_offset=start, lost=start - offset,
            )
            self._replay = (start, end)
            return self._poll_replay(count)
        self._replay = (records[-1].offset + 1, end) if records else None
        return records

    def _poll_claimed(self, count: int) -> list[LogRecord]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        cursor, rows = self._claim(
            keys=[self._stream],
            args=[self.group, self.name, self._claim_idle_ms, self._claim_cursor, count],
        )
        self._claim_cursor = cursor.decode() or "-"
        if self._claim_cursor == "-":  # swept the whole pending list: rest a while
            self._next_claim = now + self._claim_idle_ms / 2000
        return self._decode(rows)

    def _poll_new(self, count: int, timeout_s: float) -> list[LogRecord]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            block = None if left <= 0 else max(1, int(min(left, _BLOCK_SLICE_S) * 1000))
            reply: Any = self._client.xreadgroup(
                self.group, self.name, {self._stream: ">"}, count=count, block=block
            )
            if reply:
                return self._decode(reply[0][1])
            if block is None or time.monotonic() >= deadline:
                return []

    def _decode(self, rows: Any) -> list[LogRecord]:
        return [decode_entry(self._stream, raw_id, fields) for raw_id, fields in rows]

    def commit(self, next_offset: int) -> None:
        self._check_open()
        if next_offset < 0:
            raise OffsetOutOfRangeError(f"cannot commit offset {next_offset}: it is negative")
        with map_redis_errors("commit"):
            done, end = self._commit(
                keys=[self._stream, self._log.meta_key, self._log.commits_key],
                args=[self.group, self.name, next_offset],
            )
        if not done:
            raise OffsetOutOfRangeError(
                f"cannot commit offset {next_offset}: the log ends at {end}"
            )

    def committed(self) -> int:
        self._check_open()
        with map_redis_errors("committed"):
            value = self._client.hget(self._log.commits_key, self.group)
        return 0 if value is None else int(value)

    def seek(self, offset: int) -> None:
        """Replay from ``offset``: below the group's position this member re-reads what
        was handed out (to any member); above it the group skips ahead."""
        start, end = self._log.offsets()
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(f"cannot seek to {offset}: the log holds {start}..{end}")
        with map_redis_errors("seek"):
            handed_out = self._seek(
                keys=[self._stream, self._log.meta_key], args=[self.group, offset]
            )
        self._pending_cursor = None  # the replay covers them, or they were skipped
        self._replay = (offset, int(handed_out)) if offset < handed_out else None

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        self._log.check_open()
        if self._closed:
            raise LogClosedError(f"consumer {self.group}/{self.name} is closed")
