"""``CatalogView`` on real logs (file and Redis): changes, rebuilds, concurrency."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from hotshelf.catalog import CatalogView
from hotshelf.config import LogConfig
from hotshelf.errors import NotFoundError, ValidationError
from hotshelf.events import Availability, CatalogChange, CatalogOp, Item, encode_catalog_change
from hotshelf.log import EventLog, FileLog

OpenLog = Callable[[], EventLog]


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    """Opens the same catalog log each call (closing the one opened before)."""
    opened: list[EventLog] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def open_again() -> EventLog:
        for old in opened:
            old.close()
        opened.clear()
        log: EventLog
        if url is None:
            log = FileLog(tmp_path / "catalog", LogConfig(fsync=False))
        else:
            from hotshelf.log._redis_log import RedisStreamLog

            log = RedisStreamLog(LogConfig(backend="redis", redis_url=url), "catalog")
        opened.append(log)
        return log

    yield open_again
    for log in opened:
        log.close()


def item(n: int, **changes: object) -> Item:
    fields: dict[str, object] = {
        "item_id": f"i{n}",
        "title": f"Item {n}",
        "category": ["Home", "Kitchen"],
        "price": 10.0 + n,
    }
    return msgspec.convert(fields | changes, Item)


def snapshot(view: CatalogView) -> dict[str, bytes]:
    return {i.item_id: msgspec.json.encode(i) for i in view.items()}


def test_upsert_get_replace_delete(open_log: OpenLog) -> None:
    view = CatalogView(open_log())
    assert view.catch_up() == 0
    result = view.upsert([item(1), item(2)])
    assert (result.first_offset, result.count) == (0, 2)
    assert view.offset == 2
    assert view.get("i1") == item(1)
    assert len(view) == 2
    assert "i2" in view
    assert "i9" not in view
    view.upsert([item(1, title="New title", availability="out_of_stock")])
    assert view.get("i1").title == "New title"
    assert view.get("i1").availability is Availability.OUT_OF_STOCK
    view.delete(["i2"])
    assert "i2" not in view
    with pytest.raises(NotFoundError, match="i2"):
        view.get("i2")
    assert [i.item_id for i in view.items()] == ["i1"]
    assert view.get_many(["i1", "i2", "zz"]) == {"i1": view.get("i1")}


def test_rebuild_after_reopening_equals_the_view(open_log: OpenLog) -> None:
    view = CatalogView(open_log())
    view.upsert([item(n) for n in range(50)])
    view.upsert([item(n, price=1.0) for n in range(0, 50, 7)])
    view.delete([f"i{n}" for n in range(0, 50, 5)])
    rebuilt = CatalogView(open_log(), read_batch=7)
    assert rebuilt.catch_up() == 50 + 8 + 10
    assert rebuilt.offset == view.offset
    assert snapshot(rebuilt) == snapshot(view)


def test_bad_items_append_nothing(open_log: OpenLog) -> None:
    log = open_log()
    view = CatalogView(log)
    bad = [item(1), Item(item_id="i2", title=""), Item(item_id="i3", title="t", price=-5.0)]
    with pytest.raises(ValidationError) as caught:
        view.upsert(bad)
    assert [p.path for p in caught.value.problems] == ["$[1].title", "$[2].price"]
    assert log.end_offset == 0
    assert len(view) == 0


def test_deleting_unknown_items_appends_nothing(open_log: OpenLog) -> None:
    log = open_log()
    view = CatalogView(log)
    view.upsert([item(1)])
    with pytest.raises(NotFoundError, match="'nope'"):
        view.delete(["i1", "nope"])
    assert log.end_offset == 1
    assert "i1" in view


def test_empty_changes_append_nothing(open_log: OpenLog) -> None:
    log = open_log()
    view = CatalogView(log)
    assert view.upsert([]).count == 0
    assert view.delete([]).count == 0
    assert log.end_offset == 0


def test_a_view_catches_up_on_changes_from_another_writer(open_log: OpenLog) -> None:
    log = open_log()
    first, second = CatalogView(log), CatalogView(log)
    first.upsert([item(1), item(2)])
    assert "i1" not in second
    # second's own append lands after first's records: it reads those first.
    second.upsert([item(3)])
    assert {i.item_id for i in second.items()} == {"i1", "i2", "i3"}
    assert first.catch_up() == 1
    assert snapshot(first) == snapshot(second)


def test_async_changes(open_log: OpenLog) -> None:
    view = CatalogView(open_log())

    async def main() -> None:
        await view.upsert_async([item(1), item(2)])
        await view.delete_async(["i1"])

    asyncio.run(main())
    assert [i.item_id for i in view.items()] == ["i2"]
    assert view.offset == 3


def test_concurrent_writers_end_equal_to_the_log(open_log: OpenLog) -> None:
    log = open_log()
    view = CatalogView(log)

    def write(worker: int) -> None:
        for n in range(20):
            view.upsert([item(worker * 100 + n), item(n, title=f"by {worker}")])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert view.offset == log.end_offset == 4 * 20 * 2
    rebuilt = CatalogView(log)
    rebuilt.catch_up()
    assert snapshot(rebuilt) == snapshot(view)


def test_undecodable_records_are_skipped_and_counted(open_log: OpenLog) -> None:
    log = open_log()
    change = CatalogChange(op=CatalogOp.UPSERT, item_id="i1", received_ms=1, item=item(1))
    log.append([b"not msgpack \xc1", encode_catalog_change(change)])
    view = CatalogView(log)
    assert view.catch_up() == 2
    assert view.skipped == 1
    assert "i1" in view
