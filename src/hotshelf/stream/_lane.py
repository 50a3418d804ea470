"""``Lane``: one events topic merged with the catalog, checked for bots, applied to a state.

The processor runs a real-time lane (topic ``events``) and, when there is one, a
batch lane (``events.batch``: bulk historical imports). Each lane has its own state,
bot filter, item -> category map and consumers, and depends on nothing but its own
topic and the catalog, so its state is a function of those two logs alone however
the processor interleaves the lanes: prioritising one lane over the other cannot
make a replay differ. Queries sum the lanes (``StateView``).

A lane of a partitioned processor (``_partition``) decodes every event but checks and
applies only its partition's visitors' events; the others are skipped without a
trace in the state, so it stays a function of the two logs and the partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgspec
import structlog
from msgspec.structs import astuple

from hotshelf.events import CatalogOp, EventType, StoredEvent, decode_catalog_change
from hotshelf.log import LogRecord
from hotshelf.stream._answers import BotRecord
from hotshelf.stream._bot_filter import BotFilter
from hotshelf.stream._freshness import FreshnessTracker
from hotshelf.stream._merge import TopicMerge
from hotshelf.stream._state import StreamState

__all__ = ["LANE_TOPICS", "BotFilterLike", "Lane", "VerdictLike"]

_logger = structlog.get_logger("hotshelf.stream")
# The events topic of each lane, real-time first (the order the processor serves them).
LANE_TOPICS = {"rt": "events", "batch": "events.batch"}
# decode_stored_event's decoder, called directly: one Python call less per event
_event_decoder = msgspec.msgpack.Decoder(StoredEvent)
_IMPRESSION = EventType.IMPRESSION
# Places of StoredEvent's fields in msgspec.structs.astuple(event)
_FIELDS = StoredEvent.__struct_fields__
_TYPE: Final = _FIELDS.index("type")
_TS: Final = _FIELDS.index("ts_ms")
_RECEIVED: Final = _FIELDS.index("received_ms")
_COOKIE: Final = _FIELDS.index("cookie_id")
_USER: Final = _FIELDS.index("user_id")
_SESSION: Final = _FIELDS.index("session_id")
_ITEM: Final = _FIELDS.index("item_id")
_ITEMS: Final = _FIELDS.index("item_ids")
_LOCATION: Final = _FIELDS.index("location")
_DEVICE: Final = _FIELDS.index("device")
_AGENT: Final = _FIELDS.index("user_agent")
_IP: Final = _FIELDS.index("ip_hash")
_LANE: Final = _FIELDS.index("lane")
# At most this many distinct strings are shared (_apply_events); later ones are not.
MAX_SHARED_NAMES: Final = 1 << 16


def _shared(names: dict[str, str], text: str) -> str:
    """The first string equal to ``text`` that ``names`` kept (it keeps the first
    ``MAX_SHARED_NAMES``)."""
    known = names.get(text)
    if known is not None:
        return known
    if len(names) < MAX_SHARED_NAMES:
        names[text] = text
    return text


class VerdictLike(Protocol):
    @property
    def is_bot(self) -> bool: ...


class BotFilterLike(Protocol):
    """What the processor needs of a bot filter (``hotshelf.stream.BotFilter``)."""

    def check(self, event: StoredEvent) -> VerdictLike: ...

    def to_state(self) -> object: ...

    def verdicts(self, limit: int = 100) -> list[BotRecord]: ...

    def stats(self) -> dict[str, int]: ...


class Lane:
    """A lane's merge of its topic with the catalog, its bot filter and its state."""

    def __init__(
        self,
        name: str,
        merge: TopicMerge,
        state: StreamState,
        bots: BotFilterLike | None,
        categories: dict[str, tuple[str, ...]],
        intern: Callable[[list[str] | tuple[str, ...]], tuple[str, ...]],
        freshness: FreshnessTracker,
        partition: tuple[int, int] | None = None,
    ) -> None:
        self.name = name
        self.merge = merge
        self.state = state
        self.bots = bots
        self.categories = categories
        self.freshness = freshness
        self.skipped = 0  # records that did not decode
        self._intern = intern
        # item id, location or device -> its first string: see _apply_events
        self._names: dict[str, str] = {}
        # (index, count), or None when this lane applies every event (one partition
        # of one applies every event too, so it skips the hashing)
        self._partition = None if partition is None or partition[1] == 1 else partition

    @property
    def topic(self) -> str:
        return self.merge.events.topic

    def poll(self, max_records: int, timeout_s: float) -> None:
        """Buffer new events unless enough are buffered (wait only when nothing is)."""
        merge = self.merge
        if len(merge.events.buffer) < max_records:
            busy = merge.events.buffer or merge.catalog.buffer
            merge.events.poll(max_records, 0.0 if busy else timeout_s)

    def apply(self, max_records: int, received: list[int]) -> int:
        """Apply up to ``max_records`` records in merge order; returns how many.

        Appends the ``received_ms`` of the events of this lane applied to ``received``.
        """
        applied = 0
        for is_catalog, records in self.merge.take(max_records):
            if is_catalog:
                self._apply_catalog(records)
            else:
                self._apply_events(records, received)
            applied += len(records)
        return applied

    def _apply_events(self, records: list[LogRecord], received: list[int]) -> None:
        state = self.state
        bots = self.bots
        # hotshelf's own filter is called natively, on the fields read here; another
        # (a test's) through ``check``
        native = bots if isinstance(bots, BotFilter) else None
        category_of = self.categories.get
        decode = _event_decoder.decode
        stamp, name = received.append, self.name
        index, count = self._partition or (0, 0)
        crc32 = zlib.crc32
        names = self._names
        for record in records:
            try:
                event = decode(record.value)
            except msgspec.DecodeError as exc:
                self._skip(record, exc)
                continue
            # Every field at once: an attribute of the event is a generic lookup each
            # time, a place in this tuple is not.
            fields = astuple(event)
            kind: EventType = fields[_TYPE]
            cookie: str | None = fields[_COOKIE]
            user: str | None = fields[_USER]
            session: str | None = fields[_SESSION]
            if count:
                # _partition.partition_of(visitor_key(event)), inlined: it runs per event
                key = user or cookie or session
                if (0 if key is None else crc32(key.encode()) % count) != index:
                    continue  # another partition's visitor
            # One string object per item id, location and device (the first seen, up to
            # MAX_SHARED_NAMES): the state's tables then find such keys by identity, and
            # a lookup does not touch the stored key's text (a cache miss in a big table).
            item: str | None = fields[_ITEM]
            if item is not None:
                item = _shared(names, item)
            location: str | None = fields[_LOCATION]
            if location is not None:
                location = _shared(names, location)
            device: str | None = fields[_DEVICE]
            if device is not None:
                device = _shared(names, device)
            ts_ms: int = fields[_TS]
            ip: str | None = fields[_IP]
            # impressions are the server's own record of what it served, not a visitor's
            # behaviour: the bot filter never judges them
            if bots is None or kind is _IMPRESSION:
                is_bot = False
            elif native is not None:
                agent: str | None = fields[_AGENT]
                is_bot = native.verdict_of(kind, ts_ms, cookie, session, item, ip, agent).is_bot
            else:
                is_bot = bots.check(event).is_bot
            received_ms: int = fields[_RECEIVED]
            state.apply_fields(
                kind, ts_ms, received_ms, cookie, user, session, item, fields[_ITEMS],
                location, device, ip, None if item is None else category_of(item), is_bot,
                category_of,
            )  # fmt: skip
            lane: str = fields[_LANE]
            if lane == name:  # older logs hold batch-lane events in "events"
                stamp(received_ms)

    def _apply_catalog(self, records: list[LogRecord]) -> None:
        for record in records:
            try:
                change = decode_catalog_change(record.value)
            except msgspec.DecodeError as exc:
                self._skip(record, exc)
                continue
            if change.op is CatalogOp.DELETE:
                self.categories.pop(change.item_id, None)
            elif change.item is not None:
                self.categories[change.item_id] = self._intern(change.item.category)

    def _skip(self, record: LogRecord, exc: Exception) -> None:
        # A checksummed record that does not decode is a writer's bug; skipping it is
        # deterministic, so replays skip it too.
        self.skipped += 1
        _logger.error("stream.bad_record", lane=self.name, offset=record.offset, error=str(exc))

    def offsets(self) -> dict[str, int]:
        """The next offset to apply per topic ("events" names this lane's events topic)."""
        merge = self.merge
        return {"events": merge.events.next_offset, "catalog": merge.catalog.next_offset}

    def pending(self) -> bool:
        """Whether records are buffered but not applied yet."""
        return bool(self.merge.events.buffer or self.merge.catalog.buffer)

    def snapshot_parts(self) -> dict[str, Any]:
        """What a snapshot keeps of this lane (``_snapshot.LaneSnapshot`` fields)."""
        return {
            "offsets": self.offsets(),
            "bots": None if self.bots is None else self.bots.to_state(),
            "categories": {item: list(path) for item, path in self.categories.items()},
            "state": self.state.to_state(),
        }

    def close(self) -> None:
        self.merge.events.consumer.close()
        self.merge.catalog.consumer.close()
