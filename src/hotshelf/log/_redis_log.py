"""``RedisStreamLog``: the event log kept in one Redis stream per topic.

Layout. A topic owns three keys that share the hash tag ``{prefix:topic}`` so they
land on one Redis Cluster slot (the Lua scripts touch several of them at once):

* ``{prefix:topic}:stream``  the records, one stream entry each: ``v`` the bytes,
  ``c`` their CRC32C (Redis keeps no checksums of its own);
* ``{prefix:topic}:meta``    hash: ``next`` (the next offset) and ``ms`` (the last
  entry's milliseconds);
* ``{prefix:topic}:commits`` hash: consumer group -> committed offset.

Offsets. The record at offset ``o`` has the stream ID ``<ms>-<o + 1>``. One Lua
script appends a batch: it reads ``next``, takes ``ms = max(Redis TIME, last ms)``,
XADDs every record with its explicit ID and only then moves ``next``. Scripts run
alone on the server, so offsets are dense and disjoint across any number of
processes, IDs strictly increase (time-based ``XTRIM MINID`` works for retention),
and the first write of a script is its point of no return (Redis refuses a script
for lack of memory only before its first write), so a batch is all or nothing.

Offset -> ID. Both parts of the ID grow with the offset, so the entry at ``o`` is
found by its ``ms``: a script binary-searches the smallest ``ms`` whose last entry
(``XREVRANGE <ms> - COUNT 1``, O(log n) in the stream's radix tree) reaches ``o``,
between the first and last entries' ``ms`` -- at most ~40 probes, log2 of the
milliseconds the stream spans -- and ``read`` then XRANGEs from ``<ms>-<o + 1>``.
No index to maintain or keep consistent with trimming and XDEL. Sequential reads
skip the search (one XRANGE): the ``ms`` of the record before is where the next
one starts.

Durability. ``append`` returns once Redis has executed the script and replied,
which it does after handing the batch to its append-only file. What survives a
crash is what the server is configured for: with ``appendonly yes`` and
``appendfsync always`` every acknowledged batch is fsynced; with ``everysec`` (the
usual setting) a crash of the Redis process normally loses nothing acknowledged
(the AOF is written before the reply; Redis may hold that write back up to 2 s when
fsync stalls) but a power loss or kernel crash can lose about the last second; with
AOF off, everything since the last RDB snapshot. Replication is asynchronous and no
``WAIT``/``WAITAOF`` is issued. Redis must run with ``maxmemory-policy
noeviction``: an evicting policy may drop records (or the meta hash, which the
scripts rebuild from the stream's last ID).

Errors. Every redis-py exception is translated once, in :func:`map_redis_errors`:
a server that is down, loading, read-only or out of memory is
:class:`~hotshelf.errors.UnavailableError` (503), anything else a ``LogError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import crc32c
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from hotshelf.errors import (
    ConfigError,
    CorruptLogError,
    HotshelfError,
    LogClosedError,
    LogError,
    OffsetOutOfRangeError,
    UnavailableError,
    ValidationError,
)
from hotshelf.log._base import (
    MAX_RECORD_BYTES,
    AppendResult,
    Damage,
    EventLog,
    LogObserver,
    LogRecord,
    LogStats,
    VerifyReport,
    check_batch,
)

if TYPE_CHECKING:
    from hotshelf.config import LogConfig
    from hotshelf.log._redis_consumer import RedisStreamConsumer

__all__ = ["RedisStreamLog", "map_redis_errors"]

_CONNECT_TIMEOUT_S = 2.0
# Long enough for a 1000-record script on a busy server; blocking reads stay below it.
SOCKET_TIMEOUT_S = 10.0
_VERIFY_PAGE = 1000
# Replies that mean "the server cannot take writes now", not "the request is wrong".
_UNAVAILABLE_REPLIES = (
    "OOM",
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "BUSY",
    "NOREPLICAS",
    "CLUSTERDOWN",
    "TRYAGAIN",
)

# Helpers every script starts with. Numbers go through string.format: Lua 5.1 would
# print a millisecond timestamp as 1.7e+12.
LUA_PRELUDE = """
local function sid(ms, seq) return string.format('%.0f-%.0f', ms, seq) end
local function num(x) return string.format('%.0f', x) end
local function pid(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
-- next offset and last ms used: the meta hash, or the stream's own last ID should
-- the hash have been lost
local function state(stream, meta)
  local s = redis.call('HMGET', meta, 'next', 'ms')
  if s[1] then return tonumber(s[1]), tonumber(s[2]) or 0 end
  if redis.call('EXISTS', stream) == 0 then return 0, 0 end
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local ms, seq = pid(info[i + 1])
      return seq, ms
    end
  end
  return 0, 0
end
-- ms of the first entry whose seq is at least seq (nil past the last entry): the
-- smallest ms whose last entry reaches seq, binary-searched
local function locate(stream, seq)
  local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  local tail = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #tail == 0 or select(2, pid(tail[1][1])) < seq then return nil end
  local lo, hi = pid(head[1][1]), pid(tail[1][1])
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local _, s = pid(redis.call('XREVRANGE', stream, num(mid), '-', 'COUNT', 1)[1][1])
    if s >= seq then hi = mid else lo = mid + 1 end
  end
  return lo
end
"""

# KEYS: stream, meta. ARGV: maxlen or '', then value, crc for each record.
_APPEND = LUA_PRELUDE + """
local stream, meta, maxlen = KEYS[1], KEYS[2], ARGV[1]
local nxt, last = state(stream, meta)
local t = redis.call('TIME')
local ms = math.max(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), last)
local n = (#ARGV - 1) / 2
for i = 1, n do
  local id = sid(ms, nxt + i)
  if maxlen == '' then
    redis.call('XADD', stream, id, 'v', ARGV[2 * i], 'c', ARGV[2 * i + 1])
  else
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id, 'v', ARGV[2 * i], 'c', ARGV[2 * i + 1])
  end
end
redis.call('HSET', meta, 'next', num(nxt + n), 'ms', num(ms))
return {nxt, ms}
"""

# KEYS: stream, meta. ARGV: offset. Returns {start_offset, end_offset, ms of the
# entry at offset (or of the first after it), -1 if none}.
_LOCATE = LUA_PRELUDE + """
local stream, meta, seq = KEYS[1], KEYS[2], tonumber(ARGV[1]) + 1
local nxt = state(stream, meta)
local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #head == 0 then return {nxt, nxt, -1} end
local _, first_seq = pid(head[1][1])
if seq < first_seq or seq > nxt then return {first_seq - 1, nxt, -1} end
return {first_seq - 1, nxt, locate(stream, seq) or -1}
"""

# KEYS: stream, meta. Returns {start_offset, end_offset}.
_BOUNDS = LUA_PRELUDE + """
local nxt = state(KEYS[1], KEYS[2])
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head == 0 then return {nxt, nxt} end
local _, first_seq = pid(head[1][1])
return {first_seq - 1, nxt}
"""


@contextlib.contextmanager
def map_redis_errors(doing: str, fallback: type[HotshelfError] = LogError) -> Iterator[None]:
    """Translate redis-py exceptions raised while ``doing`` into hotshelf errors: a server
    that is down, slow or refusing is ``UnavailableError``, anything else ``fallback``."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise UnavailableError(f"Redis is unreachable ({doing}): {exc}") from exc
    except redis.ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLIES):
            raise UnavailableError(f"Redis cannot serve {doing}: {exc}") from exc
        raise fallback(f"Redis refused {doing}: {exc}") from exc
    except redis.RedisError as exc:
        raise fallback(f"Redis failed {doing}: {exc}") from exc


def entry_id(raw: bytes) -> tuple[int, int]:
    """``(ms, offset)`` of a stream ID ``<ms>-<offset + 1>``."""
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq) - 1


def decode_entry(stream: str, raw_id: bytes, fields: Any) -> LogRecord:
    """A stream entry (fields as a flat list or a dict) as a checked ``LogRecord``."""
    return _record(stream, *entry_id(raw_id), fields)


def _record(stream: str, ms: int, offset: int, fields: Any) -> LogRecord:
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    value, crc = fields.get(b"v"), fields.get(b"c", b"")
    if value is None or not crc.isdigit():
        raise CorruptLogError(
            f"entry {ms}-{offset + 1} of {stream} lacks its value or checksum",
            path=stream, first=offset, last=offset,
        )
    if crc32c.crc32c(value) != int(crc):
        raise CorruptLogError(
            f"checksum mismatch at offset {offset} of {stream}",
            path=stream, first=offset, last=offset,
        )
    return LogRecord(offset, ms, value)


class RedisStreamLog(EventLog):
    """The event log of one topic in a Redis stream; see the module docstring."""

    def __init__(
        self, config: LogConfig, topic: str, *, observer: LogObserver | None = None
    ) -> None:
        if not topic or any(c in topic for c in "{}"):
            raise ConfigError(f"invalid log topic {topic!r}: empty or contains braces")
        if config.redis_maxlen is not None and config.redis_maxlen < 1:
            raise ConfigError("log.redis_maxlen must be at least 1")
        self.config = config
        self._observer = observer or LogObserver()
        tag = f"{{{config.redis_prefix}:{topic}}}"
        self.stream_key = f"{tag}:stream"
        self.meta_key = f"{tag}:meta"
        self.commits_key = f"{tag}:commits"
        self._keys = [self.stream_key, self.meta_key]
        self._maxlen = "" if config.redis_maxlen is None else str(config.redis_maxlen)
        self.client: redis.Redis = redis.Redis.from_url(
            config.redis_url,
            protocol=2,  # one reply shape for scripts and stream commands
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            # One retry, on connection errors only: a pooled connection may be stale
            # after a server restart; a timeout may mean the script ran, and a blind
            # retry would append the batch twice.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        self._append = self.client.register_script(_APPEND)
        self._locate = self.client.register_script(_LOCATE)
        self._bounds = self.client.register_script(_BOUNDS)
        self._aclient: aredis.Redis | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aappend: Any = None
        # (offset, ms of the record before it) from the last read: lets a sequential
        # reader skip the offset -> ID search
        self._hint: tuple[int, int] = (-1, 0)
        self._closed = False

    # -- writing ---------------------------------------------------------------

    def _script_args(self, values: Sequence[bytes]) -> list[bytes | str | int]:
        if not values:
            check_batch(values)
        args: list[bytes | str | int] = [self._maxlen]
        for value in values:
            if type(value) is not bytes or len(value) > MAX_RECORD_BYTES:
                check_batch(values)  # raises, unless value is a bytearray
                value = bytes(value)  # redis-py sends bytes, not bytearrays
            args += (value, crc32c.crc32c(value))
        return args

    def append(self, values: Sequence[bytes]) -> AppendResult:
        self.check_open()
        args = self._script_args(values)
        began = time.perf_counter()
        with map_redis_errors("append"):
            first, _ = self._append(keys=self._keys, args=args)
        self._observer.on_append(len(values), time.perf_counter() - began)
        return AppendResult(int(first), int(first) + len(values) - 1)

    async def append_async(self, values: Sequence[bytes]) -> AppendResult:
        self.check_open()
        args = self._script_args(values)
        script = self._async_append_script()
        began = time.perf_counter()
        with map_redis_errors("append"):
            first, _ = await script(keys=self._keys, args=args)
        self._observer.on_append(len(values), time.perf_counter() - began)
        return AppendResult(int(first), int(first) + len(values) - 1)

    def _async_append_script(self) -> Any:
        # redis.asyncio connections belong to the loop that opened them: a client
        # per loop, the previous one released when the loop changes.
        loop = asyncio.get_running_loop()
        if self._aloop is not loop:
            self._release_async_client()
            self._aclient = aredis.Redis.from_url(
                self.config.redis_url,
                protocol=2,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
                retry=AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
            self._aappend = self._aclient.register_script(_APPEND)
            self._aloop = loop
        return self._aappend

    def _release_async_client(self) -> None:
        client, loop = self._aclient, self._aloop
        self._aclient = self._aloop = self._aappend = None
        if client is None or loop is None:
            return
        if loop.is_closed():
            # Its transports cannot be closed through a dead loop any more: close
            # the sockets underneath and forget them.
            for conn in _pool_connections(client.connection_pool):
                _drop_connection(conn)
        elif loop.is_running():
            with contextlib.suppress(RuntimeError):
                if asyncio.get_running_loop() is loop:
                    # Called synchronously inside the loop: closing the writers
                    # schedules the transports' close on it.
                    for conn in _pool_connections(client.connection_pool):
                        _drop_connection(conn)
                    return
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(_CONNECT_TIMEOUT_S)
        else:
            loop.run_until_complete(client.aclose())

    # -- reading ---------------------------------------------------------------

    def read(self, offset: int, max_records: int = 1000) -> list[LogRecord]:
        self.check_open()
        if max_records < 1:
            raise ValidationError("max_records must be at least 1")
        if offset < 0:
            raise OffsetOutOfRangeError(f"offset {offset} is negative")
        hint_offset, hint_ms = self._hint
        rows = self._range(hint_ms, offset, max_records) if hint_offset == offset else []
        if not rows or entry_id(rows[0][0])[1] != offset:
            rows = self._locate_range(offset, max_records)
        records: list[LogRecord] = []
        for raw_id, fields in rows:
            # Stop at a hole or a bad entry; the read that starts there reports it.
            ms, at = entry_id(raw_id)
            if at != offset + len(records):
                break
            try:
                records.append(_record(self.stream_key, ms, at, fields))
            except CorruptLogError:
                if not records:
                    raise
                break
        if records:
            self._hint = (records[-1].offset + 1, records[-1].timestamp_ms)
        return records

    def _range(self, ms: int, offset: int, count: int) -> Any:
        """Up to ``count`` entries from ID ``<ms>-<offset + 1>`` on."""
        with map_redis_errors("read"):
            return self.client.xrange(self.stream_key, min=f"{ms}-{offset + 1}", count=count)

    def _locate_range(self, offset: int, count: int) -> Any:
        """The entries from ``offset`` on, found with the offset -> ID search."""
        with map_redis_errors("read"):
            start, end, ms = self._locate(keys=self._keys, args=[offset])
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside {self.stream_key}'s range {start}..{end}"
            )
        rows = self._range(ms, offset, count) if ms >= 0 else []
        if offset < end and (not rows or entry_id(rows[0][0])[1] != offset):
            start, end = self.offsets()
            if offset < start:  # trimmed between the search and the read
                raise OffsetOutOfRangeError(f"offset {offset} was trimmed from {self.stream_key}")
            found = entry_id(rows[0][0])[1] if rows else end
            raise CorruptLogError(
                f"offsets {offset}..{found - 1} are missing from {self.stream_key}",
                path=self.stream_key, first=offset, last=found - 1,
            )
        return rows

    def offsets(self) -> tuple[int, int]:
        """``(start_offset, end_offset)``, read together."""
        self.check_open()
        with map_redis_errors("bounds"):
            start, end = self._bounds(keys=self._keys)
        return int(start), int(end)

    @property
    def start_offset(self) -> int:
        return self.offsets()[0]

    @property
    def end_offset(self) -> int:
        return self.offsets()[1]

    def consumer(self, group: str, name: str = "0") -> RedisStreamConsumer:
        # imported here: the consumer module builds on this one
        from hotshelf.log._redis_consumer import RedisStreamConsumer

        self.check_open()
        return RedisStreamConsumer(self, group, name)

    # -- maintenance -----------------------------------------------------------

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Trim by age (``retention_hours``), count (``redis_maxlen``) and, estimated from
        ``MEMORY USAGE``, size (``retention_bytes``); returns how many records went."""
        self.check_open()
        removed = 0
        config = self.config
        with map_redis_errors("retention"):
            if config.retention_hours is not None:
                if now_ms is None:
                    seconds, micros = self.client.time()  # the clock the IDs were made with
                    now_ms = seconds * 1000 + micros // 1000
                minid = now_ms - int(config.retention_hours * 3_600_000)
                removed += self.client.xtrim(self.stream_key, minid=minid, approximate=False)
            keep = config.redis_maxlen
            if config.retention_bytes is not None:
                size, length = self._size(), self.client.xlen(self.stream_key)
                if size > config.retention_bytes:
                    by_size = length * config.retention_bytes // size
                    keep = by_size if keep is None else min(keep, by_size)
            if keep is not None:
                removed += self.client.xtrim(self.stream_key, maxlen=keep, approximate=False)
        return removed

    def verify(self) -> VerifyReport:
        start, end = self.offsets()
        report = VerifyReport(
            records=0, segments=1, size_bytes=self._size(), start_offset=start, end_offset=end
        )
        expected, lower = start, "-"
        while True:
            with map_redis_errors("verify"):
                page: Any = self.client.xrange(
                    self.stream_key, min=lower, max="+", count=_VERIFY_PAGE
                )
            for raw_id, fields in page:
                _, offset = entry_id(raw_id)
                if offset >= end:
                    return report  # appended after the scan began
                if offset > expected:
                    report.damage.append(self._hole(report.records, expected, offset - 1))
                try:
                    decode_entry(self.stream_key, raw_id, fields)
                except CorruptLogError as exc:
                    report.damage.append(
                        Damage(self.stream_key, report.records, offset, offset, exc.message)
                    )
                report.records += 1
                expected = offset + 1
            if len(page) < _VERIFY_PAGE:
                break
            lower = "(" + page[-1][0].decode()
        if expected < end:
            report.damage.append(self._hole(report.records, expected, end - 1))
        return report

    def _hole(self, position: int, first: int, last: int) -> Damage:
        # position: how many entries precede the hole (a stream has no byte positions)
        reason = f"offsets {first}..{last} missing from the stream"
        return Damage(self.stream_key, position, first, last, reason)

    def _size(self) -> int:
        with map_redis_errors("stats"):
            return self.client.memory_usage(self.stream_key) or 0

    def stats(self) -> LogStats:
        start, end = self.offsets()
        return LogStats(start_offset=start, end_offset=end, size_bytes=self._size(), segments=1)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release_async_client()
        self.client.close()

    def check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"the log {self.stream_key} is closed")


# redis.asyncio offers no synchronous close, and none at all once the connections'
# loop is closed; these reach into its connections to release them anyway.
def _pool_connections(pool: Any) -> list[Any]:
    return [*pool._available_connections, *pool._in_use_connections]


def _drop_connection(conn: Any) -> None:
    writer = conn._writer
    conn._writer = conn._reader = None
    if writer is None:
        return
    transport = writer.transport
    try:
        transport.close()
    except RuntimeError:  # its loop is closed: close the socket ourselves
        sock = transport._sock
        transport._sock = None
        if sock is not None:
            sock.close()
