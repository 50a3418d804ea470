"""Simulated store traffic as the stream processor sees it: stored events and log topics.

``received_ms`` is set to the event's own time, so a simulation always gives the same
records, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from hotshelf.config import Config, EventsConfig, LogConfig, StreamConfig
from hotshelf.events import (
    CatalogChange,
    CatalogOp,
    Item,
    StoredEvent,
    encode_catalog_change,
    normalize,
)
from hotshelf.log import FileLog
from hotshelf.simulation import SimEvent, StoreSimulator

EVENTS = EventsConfig()


def stored(events: Iterable[SimEvent]) -> Iterator[StoredEvent]:
    """Each simulated event as the log would store it, received when it happened."""
    for sim_event in events:
        yield normalize([sim_event.event], sim_event.ts_ms, EVENTS)[0]


def categories(sim: StoreSimulator) -> dict[str, tuple[str, ...]]:
    return {item.item_id: tuple(item.category) for item in sim.catalog()}


def upserts(items: Iterable[Item], received_ms: int = 1) -> list[bytes]:
    return [
        encode_catalog_change(
            CatalogChange(op=CatalogOp.UPSERT, item_id=i.item_id, received_ms=received_ms, item=i)
        )
        for i in items
    ]


def config(data_dir: Path, **stream: object) -> Config:
    """A configuration for tests: no fsync (tmp files), stream settings as given."""
    return Config(
        data_dir=str(data_dir),
        log=LogConfig(fsync=False),
        stream=msgspec.convert(stream, StreamConfig) if stream else StreamConfig(),
    )


def open_logs(root: Path, cfg: Config) -> tuple[FileLog, FileLog]:
    return FileLog(root / "events", cfg.log), FileLog(root / "catalog", cfg.log)
