"""``RemoteState``: the state of partitioned processors, merged from their snapshots in Redis.

Partitions run as separate processes (``hotshelf stream run --partition I/N``), each
writing its snapshot to Redis (``RedisSnapshotStore``). A reader -- the HTTP service
-- polls every partition's snapshot version (one pipelined round trip, a few bytes
per partition) at most every ``stream.remote_refresh_s``, fetches only the snapshots
that changed, rebuilds their lanes' ``StreamState`` and bot filters, and answers
queries over all of them with one ``StateView``. Partitions count disjoint sets of
visitors, so the view's sums are what one processor would count; see ``_partition``
for what is judged per partition instead.

The state served is as old as the snapshots: ``freshness`` is the age of the newest
one (on Redis's clock), ``lag()`` what each partition has not applied yet. A changed
snapshot is rebuilt whole (no deltas), so a large state costs the reader a decode per
snapshot interval per partition. Rebuilt states are never updated in place, only
replaced, so a query reads the view it started with and needs no lock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import structlog

from hotshelf.errors import ConfigError, HotshelfError, UnavailableError
from hotshelf.log import EventLog, open_log
from hotshelf.log._redis_log import map_redis_errors
from hotshelf.stream._answers import BotRecord
from hotshelf.stream._lane import LANE_TOPICS, BotFilterLike
from hotshelf.stream._partition import Partition, check_partition, partition_config
from hotshelf.stream._processor import BotFilterFactory, default_bot_filter_factory
from hotshelf.stream._redis_state import RedisSnapshotStore, SnapshotVersion, redis_client
from hotshelf.stream._snapshot import Snapshot, decode_snapshot, settings_fingerprint
from hotshelf.stream._state import StreamState
from hotshelf.stream._view import StateView

if TYPE_CHECKING:
    import redis

    from hotshelf.config import Config

__all__ = ["RemoteState"]

_logger = structlog.get_logger("hotshelf.stream")
_NONE = SnapshotVersion(0, 0)


class _Part(NamedTuple):
    """One partition as its latest snapshot left it."""

    version: SnapshotVersion
    states: dict[str, StreamState]  # per lane ("rt", "batch")
    bots: dict[str, BotFilterLike]  # per lane that has a filter
    offsets: dict[str, dict[str, int]]  # per lane: next offset per topic ("events", "catalog")
    problem: str | None  # why the snapshot held now is not used, if it is not


def lag_key(lane: str, topic: str) -> str:
    """The processor's name for a lane's topic: "events", "catalog@batch" ..."""
    if lane == "rt":
        return topic
    return LANE_TOPICS[lane] if topic == "events" else f"{topic}@{lane}"


class RemoteState:
    """Every partition's latest snapshot, merged for queries; see the module docstring.

    ``partitions`` defaults to ``config.stream.partitions``. ``logs`` (topic -> log,
    e.g. the service's own) serve ``lag()``; topics not given are opened on first use.
    """

    def __init__(
        self,
        config: Config,
        partitions: int | None = None,
        *,
        logs: Mapping[str, EventLog] | None = None,
        client: redis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        count = config.stream.partitions if partitions is None else partitions
        if count < 1:
            raise ConfigError(f"RemoteState needs at least one partition, not {count}")
        self.config = config
        self.partitions: list[Partition] = [check_partition((i, count)) for i in range(count)]
        self._client = redis_client(config.log) if client is None else client
        self._owns_client = client is None
        self._stores = [
            RedisSnapshotStore(config.log, p.pair, client=self._client) for p in self.partitions
        ]
        self._factory: BotFilterFactory | None = (
            default_bot_filter_factory(config) if config.bots.enabled else None
        )
        bots = self._factory is not None
        self._settings = [settings_fingerprint(config, bots, p.pair) for p in self.partitions]
        self._clock = clock
        self._parts = [self._empty(_NONE) for _ in self.partitions]
        self._view = self._viewed(self._parts)
        self._server_ms, self._measured_at = 0, clock()  # Redis's clock, and when read
        self._checked_at: float | None = None  # when versions were last polled (or tried)
        self._refreshed = False  # whether a refresh ever succeeded
        self._refreshing = threading.Lock()
        self._logs = dict(logs or {})
        self._opened: list[EventLog] = []  # logs this object opened, and closes

    # -- refreshing ------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> bool:
        """Fetch the snapshots that changed since the last look; True when any did.

        Looks at most every ``stream.remote_refresh_s`` unless ``force``. While another
        thread refreshes it returns False at once (the current view stays valid),
        except before the first refresh, which every caller waits for.
        """
        if not force and not self._due():
            return False
        if not self._refreshing.acquire(blocking=force or not self._refreshed):
            return False
        try:
            if not force and not self._due():  # another thread did it while we waited
                return False
            # Stamped before trying: while Redis is down, one caller per interval waits
            # out the connect timeout, not every caller.
            self._checked_at = self._clock()
            changed = self._refresh()
            self._refreshed = True
            return changed
        finally:
            self._refreshing.release()

    def _due(self) -> bool:
        checked = self._checked_at
        if checked is None or not self._refreshed:
            return True
        return self._clock() - checked >= self.config.stream.remote_refresh_s

    def _refresh(self) -> bool:
        versions = self._poll_versions()
        parts = list(self._parts)
        changed = False
        for i, version in enumerate(versions):
            if version != parts[i].version:
                parts[i] = self._fetch(i)
                changed = True
        if changed:
            self._parts = parts
            self._view = self._viewed(parts)
        return changed

    def _poll_versions(self) -> list[SnapshotVersion]:
        with map_redis_errors("snapshot versions"):
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            for store in self._stores:
                pipe.hmget(store.meta_key, ["seq", "ms"])
            (seconds, micros), *metas = pipe.execute()
        self._server_ms = int(seconds) * 1000 + int(micros) // 1000
        self._measured_at = self._clock()
        return [SnapshotVersion.from_reply(meta) for meta in metas]

    def _fetch(self, i: int) -> _Part:
        version, data = self._stores[i].read_versioned()
        if data is None:
            return self._empty(version)
        name = self.partitions[i].name
        try:
            snapshot = decode_snapshot(data)
            if snapshot.settings != self._settings[i]:
                raise ValueError("its settings differ from this reader's configuration")
            return self._restore(i, version, snapshot)
        except (msgspec.DecodeError, ValueError, HotshelfError) as exc:
            _logger.error("stream.remote_snapshot_unusable", partition=name, error=str(exc))
            return self._empty(version, f"snapshot not used: {exc}")

    def _restore(self, i: int, version: SnapshotVersion, snapshot: Snapshot) -> _Part:
        part = self._empty(version)
        settings = partition_config(self.config.stream, self.partitions[i])
        for lane, saved in snapshot.lanes.items():
            part.states[lane] = StreamState.from_state(settings, saved.state)
            if self._factory is not None and saved.bots is not None:
                part.bots[lane] = self._factory(saved.bots)
            part.offsets[lane] = dict(saved.offsets)
        return part

    def _empty(self, version: SnapshotVersion, problem: str | None = None) -> _Part:
        # A partition with no usable snapshot counts nothing yet.
        return _Part(version, {"rt": StreamState(self.config.stream)}, {}, {}, problem)

    @staticmethod
    def _viewed(parts: list[_Part]) -> StateView:
        return StateView([state for part in parts for state in part.states.values()])

    # -- reading ---------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[StateView]:
        """A view over every partition's lanes (refreshed first when due).

        With Redis unreachable it serves the last state it has (``freshness`` shows
        its age); before any refresh succeeded it raises ``UnavailableError``.
        """
        try:
            self.refresh()
        except UnavailableError as exc:
            if not self._refreshed:
                raise
            _logger.warning("stream.remote_refresh_failed", error=str(exc), action="serve stale")
        yield self._view

    def bot_verdicts(self, limit: int = 100) -> list[BotRecord]:
        """Visitors the partitions' real-time bot filters flag now, most recently seen first.

        A key flagged in several partitions (an IP shared by their visitors) is one
        record: reasons joined, events summed, times widened.
        """
        merged: dict[tuple[str, str], BotRecord] = {}
        for part in self._parts:
            bots = part.bots.get("rt")
            for record in [] if bots is None else bots.verdicts(limit):
                key = (record.kind, record.key)
                seen = merged.get(key)
                merged[key] = record if seen is None else _joined(seen, record)
        found = sorted(merged.values(), key=lambda r: (-r.last_seen_ms, r.kind, r.key))
        return found[: max(limit, 0)]

    def bot_stats(self) -> dict[str, int]:
        """Events the partitions' bot filters checked and flagged, and flagged per reason."""
        total: dict[str, int] = {}
        for part in self._parts:
            for bots in part.bots.values():
                for key, n in bots.stats().items():
                    total[key] = total.get(key, 0) + n
        return total

    def offsets(self) -> dict[str, dict[str, int]]:
        """Per partition ("p0of2"), the next offset per topic its served state reflects."""
        return {
            p.name: {
                lag_key(lane, t): n for lane, each in part.offsets.items() for t, n in each.items()
            }
            for p, part in zip(self.partitions, self._parts, strict=True)
        }

    def lag(self) -> dict[str, dict[str, int]]:
        """Per partition, records per topic the log holds that its served state lacks."""
        ends: dict[str, int] = {}
        out: dict[str, dict[str, int]] = {}
        for p, part in zip(self.partitions, self._parts, strict=True):
            row = out[p.name] = {}
            for lane, offsets in (part.offsets or {"rt": {}}).items():
                for topic in ("events", "catalog"):
                    log_topic = LANE_TOPICS[lane] if topic == "events" else topic
                    if log_topic not in ends:
                        ends[log_topic] = self._log(log_topic).end_offset
                    row[lag_key(lane, topic)] = max(0, ends[log_topic] - offsets.get(topic, 0))
        return out

    def _log(self, topic: str) -> EventLog:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = open_log(self.config, topic)
            self._opened.append(log)
        return log

    @property
    def freshness(self) -> float | None:
        """Seconds since the newest snapshot served was written; None before there is one."""
        ages = [age for age in self.snapshot_ages().values() if age is not None]
        return min(ages, default=None)

    def snapshot_ages(self) -> dict[str, float | None]:
        """Per partition, seconds since its served snapshot was written (Redis's clock)."""
        now_ms = self._server_ms + (self._clock() - self._measured_at) * 1000
        return {
            p.name: None if not part.version.written_ms
            else max(0.0, (now_ms - part.version.written_ms) / 1000)
            for p, part in zip(self.partitions, self._parts, strict=True)
        }  # fmt: skip

    def problems(self) -> dict[str, str]:
        """Partitions whose snapshot in Redis is not served, and why."""
        return {
            p.name: part.problem
            for p, part in zip(self.partitions, self._parts, strict=True)
            if part.problem is not None
        }

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Release the logs this object opened and its Redis connections."""
        for log in self._opened:
            log.close()
        self._opened.clear()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RemoteState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _joined(a: BotRecord, b: BotRecord) -> BotRecord:
    return BotRecord(
        kind=a.kind,
        key=a.key,
        reasons=tuple(dict.fromkeys(a.reasons + b.reasons)),
        first_seen_ms=min(a.first_seen_ms, b.first_seen_ms),
        last_seen_ms=max(a.last_seen_ms, b.last_seen_ms),
        events=a.events + b.events,
        flagged_until_ms=max(a.flagged_until_ms, b.flagged_until_ms),
    )
