"""``CatalogView``: the current catalog, materialized from the "catalog" log topic.

The log is the source of truth: every change is appended as a ``CatalogChange``
record first and applied to the in-memory view after, in log order, so a view
rebuilt from offset 0 always equals the live one. The topic must keep every record
(no retention trimming), or a rebuilt view would miss the items changed before the
log's ``start_offset``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec
import structlog

from hotshelf.catalog._problems import split_error
from hotshelf.errors import FieldProblem, NotFoundError, ValidationError
from hotshelf.events import (
    CatalogChange,
    CatalogOp,
    Item,
    decode_catalog_change,
    encode_catalog_change,
)
from hotshelf.log import AppendResult, EventLog, LogRecord

__all__ = ["CatalogView"]

_logger = structlog.get_logger("hotshelf.catalog")


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class CatalogView:
    """Items by id, kept equal to the catalog log up to ``offset``.

    Reads never block; changes and catch-up hold one lock, so an asyncio server and
    threads (a CLI, a refresher) can share one view.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        clock: Callable[[], int] | None = None,
        read_batch: int = 1000,
    ) -> None:
        self._log = log
        self._clock = clock or _wall_clock_ms
        self._read_batch = read_batch
        self._items: dict[str, Item] = {}
        self._offset = 0
        self._lock = threading.RLock()
        self.skipped = 0  # records that did not decode as a catalog change

    @property
    def offset(self) -> int:
        """The next log offset to apply: the view reflects every record below it."""
        return self._offset

    # -- reading ---------------------------------------------------------------

    def get(self, item_id: str) -> Item:
        """The item, or ``NotFoundError`` when it is unknown or deleted."""
        try:
            return self._items[item_id]
        except KeyError:
            raise NotFoundError(f"no item {item_id!r} in the catalog") from None

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """The known items among ``item_ids`` (unknown ones are left out)."""
        items = self._items
        return {i: items[i] for i in item_ids if i in items}

    def items(self) -> Iterator[Item]:
        """Every item, from a snapshot taken now."""
        with self._lock:
            snapshot = list(self._items.values())
        return iter(snapshot)

    def item_ids(self) -> list[str]:
        """Every item's id, from a snapshot taken now."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    # -- following the log -----------------------------------------------------

    def catch_up(self) -> int:
        """Apply every record past ``offset`` (all of them the first time); returns how many."""
        applied = 0
        with self._lock:
            offset = max(self._offset, self._log.start_offset)
            while offset < self._log.end_offset:
                records = self._log.read(offset, self._read_batch)
                if not records:
                    break
                for record in records:
                    self._apply_record(record)
                applied += len(records)
                offset = self._offset = records[-1].offset + 1
        return applied

    def _apply_record(self, record: LogRecord) -> None:
        try:
            change = decode_catalog_change(record.value)
        except msgspec.DecodeError as exc:
            # A checksummed record that is not a catalog change is a writer's bug; keep
            # serving the rest of the catalog and say so loudly.
            self.skipped += 1
            _logger.error("catalog.bad_record", offset=record.offset, error=str(exc))
            return
        self._apply(change)

    def _apply(self, change: CatalogChange) -> None:
        if change.op is CatalogOp.DELETE:
            self._items.pop(change.item_id, None)
        elif change.item is not None:
            self._items[change.item_id] = change.item

    # -- changing --------------------------------------------------------------

    def upsert(self, items: Sequence[Item]) -> AppendResult:
        """Add or replace ``items`` as one log batch, then apply it."""
        return self._write(*self._encode_upserts(items))

    async def upsert_async(self, items: Sequence[Item]) -> AppendResult:
        """``upsert`` for event loops: awaits the append without blocking the loop."""
        return await self._write_async(*self._encode_upserts(items))

    def delete(self, item_ids: Sequence[str]) -> AppendResult:
        """Remove items; ``NotFoundError`` (nothing appended) if any is not in the catalog."""
        return self._write(*self._encode_deletes(item_ids))

    async def delete_async(self, item_ids: Sequence[str]) -> AppendResult:
        """``delete`` for event loops."""
        return await self._write_async(*self._encode_deletes(item_ids))

    def _write(self, values: list[bytes], changes: list[CatalogChange]) -> AppendResult:
        """Append encoded changes as one batch, then apply them (or catch up to them)."""
        if not values:
            return self._nothing()
        result = self._log.append(values)
        if not self._apply_own(result, changes):
            self.catch_up()
        return result

    async def _write_async(self, values: list[bytes], changes: list[CatalogChange]) -> AppendResult:
        if not values:
            return self._nothing()
        result = await self._log.append_async(values)
        if not self._apply_own(result, changes):
            await asyncio.to_thread(self.catch_up)
        return result

    def _nothing(self) -> AppendResult:
        end = self._log.end_offset
        return AppendResult(first_offset=end, last_offset=end - 1)

    def _encode_upserts(self, items: Sequence[Item]) -> tuple[list[bytes], list[CatalogChange]]:
        """Encode and decode back, so what is applied is exactly what a replay reads,
        and items built in Python are held to the same constraints as decoded ones."""
        now = self._clock()
        values, changes, problems = [], [], []
        for i, item in enumerate(items):
            change = CatalogChange(
                op=CatalogOp.UPSERT, item_id=item.item_id, received_ms=now, item=item
            )
            data = encode_catalog_change(change)
            try:
                changes.append(decode_catalog_change(data))
            except msgspec.ValidationError as exc:
                path, problem = split_error(exc)
                # The item sits at index 3 of the array-like change record.
                problems.append(FieldProblem(f"$[{i}]{path.removeprefix('[3]')}", problem))
            values.append(data)
        if problems:
            raise ValidationError(f"{len(problems)} invalid item(s); nothing changed", problems)
        return values, changes

    def _encode_deletes(self, item_ids: Sequence[str]) -> tuple[list[bytes], list[CatalogChange]]:
        missing = [i for i in item_ids if i not in self._items]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:10])
            raise NotFoundError(f"{len(missing)} item(s) not in the catalog: {shown}")
        now = self._clock()
        changes = [CatalogChange(op=CatalogOp.DELETE, item_id=i, received_ms=now) for i in item_ids]
        return [encode_catalog_change(c) for c in changes], changes

    def _apply_own(self, result: AppendResult, changes: list[CatalogChange]) -> bool:
        """Apply a batch this view appended; False when earlier records must be read first."""
        with self._lock:
            if result.first_offset > self._offset:
                return False
            for change in changes[max(0, self._offset - result.first_offset) :]:
                self._apply(change)
            self._offset = max(self._offset, result.last_offset + 1)
            return True
