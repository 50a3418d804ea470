"""``Interactions``: who engaged with what, as the visitor x item matrix ``implicit`` trains on.

The matrix is built from the event logs, not from the stream state: the state keeps
windows and sketches, collaborative filtering needs every visitor's whole history.
``read_interactions`` replays the logs through a fresh bot filter per log, built as
the stream processor builds its lanes' filters (``default_bot_filter_factory``, one
per lane, none when ``bots.enabled`` is off), so an event the service calls a bot's
never shapes a visitor's factors or an item's either.

Feedback is implicit: each event type named in ``recommend.cf.event_weights`` adds its
weight to the (visitor, item) cell, summed over the visitor's events; a purchase
counts for every item it lists. The batch log (bulk historical imports) is read
before the live one, so "log order" below means history first, each log in offset
order; every (visitor, item, weight) triple is kept in that order, which is what the
held-out check (the visitor's last item) and fold-in (their most recent items) need.
"""

from __future__ import annotations

import array
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import scipy.sparse

from hotshelf.events import EventType, StoredEvent
from hotshelf.stream import default_bot_filter_factory

if TYPE_CHECKING:
    from hotshelf.config import CollaborativeConfig, Config
    from hotshelf.log import EventLog
    from hotshelf.stream._lane import BotFilterLike

__all__ = [
    "Interactions",
    "InteractionsBuilder",
    "ReadStats",
    "read_interactions",
    "visitor_key",
]

_READ_CHUNK = 2000  # records per log read
_event_decoder = msgspec.msgpack.Decoder(StoredEvent)


def visitor_key(user_id: str | None, cookie_id: str | None) -> str | None:
    """The key a visitor is trained and served under: the user id when signed in, else
    the cookie; None when neither. The stream state keys visitors the same way
    (``stream._partition.visitor_key``), so one key finds a visitor's history there
    and their factors here. A session alone is not a visitor: it ends with the visit."""
    return user_id or cookie_id or None


class ReadStats(msgspec.Struct, kw_only=True):
    """What a replay of the logs found: records read, undecodable ones skipped, events
    a bot filter flagged (left out), and feedback (visitor, item) events kept."""

    records: int = 0
    skipped: int = 0
    bot_events: int = 0
    feedback: int = 0


class Interactions:
    """The visitor x item matrix (CSR, summed weights) and the triples it was summed from.

    ``rows``/``cols``/``weights`` hold one (visitor index, item index, weight) per
    feedback event, in log order; ``offsets`` are the next offset of each log read.
    """

    def __init__(
        self,
        visitors: list[str],
        items: list[str],
        triples: tuple[np.ndarray, np.ndarray, np.ndarray],
        *,
        offsets: Mapping[str, int] | None = None,
        stats: ReadStats | None = None,
    ) -> None:
        self.visitors, self.items = visitors, items
        self.rows, self.cols, self.weights = triples
        self.offsets = dict(offsets or {})
        self.stats = stats or ReadStats()
        self.visitor_index = {key: n for n, key in enumerate(visitors)}
        self.item_index = {key: n for n, key in enumerate(items)}
        matrix = scipy.sparse.csr_matrix(
            (self.weights, (self.rows, self.cols)),
            shape=(len(visitors), len(items)),
            dtype=np.float32,
        )
        matrix.sum_duplicates()  # sorts the indices too: the same data, the same bytes
        self.matrix: scipy.sparse.csr_matrix = matrix

    @property
    def n_interactions(self) -> int:
        """Distinct (visitor, item) pairs."""
        return int(self.matrix.nnz)

    def row(self, visitor: str) -> dict[str, float]:
        """The visitor's items and summed weights ({} for a visitor not in the matrix)."""
        index = self.visitor_index.get(visitor)
        if index is None:
            return {}
        start, end = self.matrix.indptr[index], self.matrix.indptr[index + 1]
        cols, data = self.matrix.indices[start:end], self.matrix.data[start:end]
        return {self.items[c]: float(w) for c, w in zip(cols, data, strict=True)}

    @cached_property
    def _by_visitor(self) -> tuple[np.ndarray, np.ndarray]:
        """Triple positions grouped by visitor (log order kept within each), and where
        each visitor's group starts."""
        order = np.argsort(self.rows, kind="stable")
        starts = np.searchsorted(self.rows[order], np.arange(len(self.visitors) + 1))
        return order, starts

    def recent_items(self, visitor: str, limit: int) -> dict[str, float]:
        """The visitor's ``limit`` most recently engaged items, oldest first, each with
        its weight summed over all the visitor's events: what ``recommend_for_items`` takes."""
        index = self.visitor_index.get(visitor)
        if index is None or limit < 1:
            return {}
        order, starts = self._by_visitor
        positions = order[starts[index] : starts[index + 1]]
        latest: dict[int, None] = {}
        for col in self.cols[positions[::-1]].tolist():
            if col not in latest:
                latest[col] = None
                if len(latest) == limit:
                    break
        totals = self.row(visitor)
        return {self.items[c]: totals[self.items[c]] for c in reversed(latest)}

    def hold_out_last(self, min_items: int = 3) -> tuple[Interactions, dict[str, str]]:
        """A training split and, for each visitor with at least ``min_items`` distinct
        items, the item of their last event (every event on it held out, so no trace
        of it leaks into training). Indices stay the same in the split."""
        order, starts = self._by_visitor
        counts = np.diff(self.matrix.indptr)
        eligible = counts >= min_items
        last = np.full(len(self.visitors), -1, dtype=np.int64)
        last[eligible] = self.cols[order[starts[1:][eligible] - 1]]
        held = last[self.rows] == self.cols
        split = Interactions(
            self.visitors,
            self.items,
            (self.rows[~held], self.cols[~held], self.weights[~held]),
            offsets=self.offsets,
        )
        truth = {self.visitors[v]: self.items[last[v]] for v in np.flatnonzero(eligible)}
        return split, truth


class InteractionsBuilder:
    """Collects feedback events in log order; ``build`` drops visitors with fewer than
    ``min_user_events`` of them (and items only they engaged) and makes the matrix."""

    def __init__(self, config: CollaborativeConfig) -> None:
        self._weights = {EventType(kind): w for kind, w in config.event_weights.items()}
        self._min_events = config.min_user_events
        self._visitors: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self._rows = array.array("q")
        self._cols = array.array("q")
        self._w = array.array("f")
        self.stats = ReadStats()

    def add(self, event: StoredEvent) -> None:
        """Count one event (a bot's must not reach here); non-feedback events are ignored."""
        weight = self._weights.get(event.type)
        if weight is None:
            return
        visitor = visitor_key(event.user_id, event.cookie_id)
        if visitor is None:
            return
        row = self._visitors.setdefault(visitor, len(self._visitors))
        for item in _items_of(event):
            self._rows.append(row)
            self._cols.append(self._items.setdefault(item, len(self._items)))
            self._w.append(weight)
            self.stats.feedback += 1

    def build(self, offsets: Mapping[str, int] | None = None) -> Interactions:
        rows = np.frombuffer(self._rows, dtype=np.int64).astype(np.int32)
        cols = np.frombuffer(self._cols, dtype=np.int64).astype(np.int32)
        weights = np.frombuffer(self._w, dtype=np.float32).copy()
        visitors, items = list(self._visitors), list(self._items)
        if self._min_events > 1:
            keep = np.bincount(rows, minlength=len(visitors))[rows] >= self._min_events
            rows, cols, weights = rows[keep], cols[keep], weights[keep]
            visitors, rows = _compact(visitors, rows)
            items, cols = _compact(items, cols)
        return Interactions(visitors, items, (rows, cols, weights), offsets=offsets,
                            stats=self.stats)  # fmt: skip


def _items_of(event: StoredEvent) -> Iterable[str]:
    """The items an event is about: its item, and every item a purchase lists (once)."""
    if event.item_ids:
        listed = dict.fromkeys(event.item_ids)
        if event.item_id is not None:
            listed[event.item_id] = None
        return listed
    return () if event.item_id is None else (event.item_id,)


def _compact(keys: list[str], indices: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The keys still used, in their first-seen order, and the indices renumbered."""
    used = np.unique(indices)
    renumber = np.full(len(keys), -1, dtype=np.int32)
    renumber[used] = np.arange(len(used), dtype=np.int32)
    return [keys[i] for i in used.tolist()], renumber[indices]


def read_interactions(
    config: Config, events_log: EventLog, batch_log: EventLog | None = None
) -> Interactions:
    """Feedback from both event logs up to their current ends, bots left out."""
    builder = InteractionsBuilder(config.recommend.cf)
    make_filter = default_bot_filter_factory(config) if config.bots.enabled else None
    offsets: dict[str, int] = {}
    for topic, log in (("events.batch", batch_log), ("events", events_log)):
        if log is not None:
            bots = None if make_filter is None else make_filter(None)
            offsets[topic] = _replay(log, bots, builder)
    return builder.build(offsets)


def _replay(log: EventLog, bots: BotFilterLike | None, builder: InteractionsBuilder) -> int:
    """Feed ``log`` from its start to its end now through ``bots`` into ``builder``;
    answers the offset it read to. Records appended meanwhile wait for the next run."""
    end, offset = log.end_offset, log.start_offset
    check, stats, decode = (
        None if bots is None else bots.check,
        builder.stats,
        _event_decoder.decode,
    )
    while offset < end:
        records = log.read(offset, min(_READ_CHUNK, end - offset))
        if not records:
            break
        for record in records:
            stats.records += 1
            try:
                event = decode(record.value)
            except msgspec.DecodeError:
                stats.skipped += 1  # the stream processor logs it; skipping is what it does
                continue
            if check is not None and check(event).is_bot:
                stats.bot_events += 1
                continue
            builder.add(event)
        offset = records[-1].offset + 1
    return offset
