"""Load for ``bench_stream``'s freshness and memory sections.

- ``write_catalog``: the catalog topic, as the stream processor reads it.
- ``SteadyWriter``: appends prepared events to a log at a fixed rate in small
  batches, stamping ``received_ms`` with the wall clock as each batch is appended
  (as the ingest API does), so a consumer's freshness can be measured from it.
- ``VisitorLoad`` / ``write_visitor_log``: many distinct visitors, a few events each,
  over a fixed catalog, deterministic for a seed. ``StoreSimulator`` audiences are far
  smaller, so these events are made here: visitor ``v`` arrives at step ``v`` of an
  ``span_s`` long stretch of event time (one hour, the default visitor horizon, so every
  visitor is active at once) and comes back every ``gap_s``; items are drawn Zipf-like.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from benchmarks._loadgen import percentile
from hotshelf.config import Config
from hotshelf.events import (
    CatalogChange,
    CatalogOp,
    EventType,
    Item,
    StoredEvent,
    encode_catalog_change,
    encode_stored_event,
)
from hotshelf.log import EventLog, open_log

__all__ = ["SteadyWriter", "VisitorLoad", "wall_ms", "write_catalog", "write_visitor_log"]

BATCH = 2000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def write_catalog(cfg: Config, items: Sequence[Item], received_ms: int) -> None:
    """Upsert every item into the catalog topic."""
    changes = [
        CatalogChange(op=CatalogOp.UPSERT, item_id=i.item_id, received_ms=received_ms, item=i)
        for i in items
    ]
    with open_log(cfg, "catalog") as catalog:
        for i in range(0, len(changes), BATCH):
            catalog.append([encode_catalog_change(c) for c in changes[i : i + BATCH]])


class SteadyWriter:
    """Appends ``events`` to ``log`` at ``rate`` per second, one batch every ``tick_s``.

    The schedule is kept against the start time: a late tick appends what is due, so
    the average rate holds even when an append or the GIL holds the writer up.
    """

    def __init__(
        self, log: EventLog, events: Sequence[StoredEvent], rate: float, tick_s: float = 0.005
    ) -> None:
        self._log = log
        self._events = events
        self.rate = rate
        self.tick_s = tick_s
        self.append_ms: list[float] = []  # stamp to durable append, per batch
        self.max_batch = 0
        self.elapsed_s = 0.0

    def run(self) -> None:
        events, total = self._events, len(self._events)
        start = time.perf_counter()
        sent = ticks = 0
        while sent < total:
            ticks += 1
            pause = start + ticks * self.tick_s - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            due = min(total, int(self.rate * (time.perf_counter() - start)))
            if due > sent:
                self._append(events[sent:due])
                sent = due
        self.elapsed_s = time.perf_counter() - start

    def _append(self, batch: Sequence[StoredEvent]) -> None:
        began = time.perf_counter()
        now = wall_ms()
        for event in batch:
            event.received_ms = now
        self._log.append([encode_stored_event(e) for e in batch])
        self.append_ms.append((time.perf_counter() - began) * 1000)
        self.max_batch = max(self.max_batch, len(batch))

    def report(self) -> dict[str, Any]:
        """What was appended, at what rate, and how long appends took."""
        ordered = sorted(self.append_ms)
        sent = len(self._events)
        return {
            "events": sent,
            "seconds": round(self.elapsed_s, 2),
            "target_rate": self.rate,
            "achieved_rate": round(sent / self.elapsed_s) if self.elapsed_s else None,
            "batches": len(ordered),
            "max_batch": self.max_batch,
            "append_p50_ms": round(percentile(ordered, 50), 2),
            "append_p99_ms": round(percentile(ordered, 99), 2),
        }


# A few real browser agents and places, so no rule of the bot filter fires on them.
_AGENTS = {
    "mobile": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
}
_LOCATIONS = (
    "New York, US", "Los Angeles, US", "London, GB", "Chicago, US", "Houston, US",
    "Berlin, DE", "Paris, FR", "Toronto, CA", "Seattle, US", "Miami, US",
)  # fmt: skip


def _device(v: int) -> str:
    share = v % 100
    return "mobile" if share < 60 else "desktop" if share < 93 else "tablet"


class VisitorLoad(msgspec.Struct, frozen=True, kw_only=True):
    """``visitors`` distinct visitors (cookie, session and IP each; 3 in 10 signed in)
    with ``per_visitor`` events each; see the module docstring."""

    visitors: int
    per_visitor: int = 2
    seed: int = 1
    span_s: float = 3600.0
    gap_s: float = 30.0
    start_ms: int = 1_700_000_000_000
    zipf_exponent: float = 1.05

    def _event(self, seq: int, v: int, j: int, item: str, ts: int) -> StoredEvent:
        if j == self.per_visitor - 1 and v % 10 == 0:
            kind = EventType.ADD_TO_CART
        else:
            kind = EventType.CLICK if j % 2 else EventType.VIEW
        device = _device(v)
        return StoredEvent(
            event_id=f"m{seq:010d}",
            type=kind,
            ts_ms=ts,
            received_ms=ts,
            cookie_id=f"c{v:08d}",
            user_id=f"u{v:08d}" if v % 10 < 3 else None,
            session_id=f"s{v:08d}",
            item_id=item,
            location=_LOCATIONS[v % len(_LOCATIONS)],
            device=device,
            user_agent=_AGENTS[device],
            ip_hash=hashlib.blake2b(v.to_bytes(8), digest_size=16).hexdigest(),
        )

    def events(self, item_ids: Sequence[str], tally: dict[str, int]) -> Iterator[StoredEvent]:
        """The events in time order: at each step one visitor arrives and earlier ones
        return. Counts the distinct (visitor, item) pairs into ``tally["pairs"]``."""
        rng = random.Random(f"bench-stream-visitors/{self.seed}")
        weights = (1 / (r + 1) ** self.zipf_exponent for r in range(len(item_ids)))
        cum = list(itertools.accumulate(weights))
        step_ms = self.span_s * 1000 / self.visitors
        back = max(1, round(self.gap_s * 1000 / step_ms))  # steps between a visitor's events
        pending: dict[int, list[str]] = {}
        seq = itertools.count()
        last = self.per_visitor - 1
        for step in range(self.visitors + last * back):
            ts = self.start_ms + int(step * step_ms)
            for j in range(self.per_visitor):
                v = step - j * back
                if not 0 <= v < self.visitors:
                    continue
                if j == 0:
                    pending[v] = rng.choices(item_ids, cum_weights=cum, k=self.per_visitor)
                    tally["pairs"] = tally.get("pairs", 0) + len(set(pending[v]))
                items = pending.pop(v) if j == last else pending[v]
                yield self._event(next(seq), v, j, items[j], ts)


def write_visitor_log(cfg: Config, load: VisitorLoad, items: Sequence[Item]) -> dict[str, Any]:
    """Write the catalog and ``load``'s events; how many distinct keys they offer the state."""
    write_catalog(cfg, items, load.start_ms - 1)
    tally: dict[str, int] = {}
    used: set[str | None] = set()
    stream = load.events([i.item_id for i in items], tally)
    with open_log(cfg, "events") as log:
        while chunk := list(itertools.islice(stream, BATCH)):
            log.append([encode_stored_event(e) for e in chunk])
            used.update(e.item_id for e in chunk)
            tally["events"] = tally.get("events", 0) + len(chunk)
    return {
        "events": tally["events"],
        "visitors": load.visitors,
        "sessions": load.visitors,
        "users": sum(1 for v in range(load.visitors) if v % 10 < 3),
        "visitor_item_pairs": tally["pairs"],
        "items": len(used),
        "catalog_items": len(items),
    }
