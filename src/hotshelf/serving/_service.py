"""What the HTTP API does, apart from HTTP: the logs, the catalog, the dedup window.

``Service`` knows nothing of ASGI, so the app in ``_app`` stays a thin adapter and a
benchmark can put another framework in front of the very same code.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec

from hotshelf.config import Config
from hotshelf.errors import (
    FieldProblem,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from hotshelf.events import (
    DedupWindow,
    Item,
    StoredEvent,
    decode_events,
    encode_stored_event,
    media_kind,
    normalize,
)
from hotshelf.log import VerifyReport
from hotshelf.monitoring import Metrics, get_logger
from hotshelf.serving._schemas import Damage, EventsAccepted, ItemsAccepted, Readiness

if TYPE_CHECKING:
    from hotshelf.catalog import CatalogView
    from hotshelf.log import AppendResult, EventLog

__all__ = ["Service"]

_logger = get_logger("hotshelf.serving")
_items_decoder = msgspec.json.Decoder(Item | list[Item])


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Service:
    """The state behind the API. ``start``/``close`` bracket its life (blocking calls)."""

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self.dedup = DedupWindow(config.events.dedup_window_s, config.events.dedup_max_ids)
        self.events_log: EventLog | None = None
        self.catalog_log: EventLog | None = None
        self.catalog: CatalogView | None = None
        self.damage: list[Damage] = []
        self._closing = False

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open both logs, catch the catalog up and rebuild the dedup window."""
        from hotshelf.catalog import CatalogView
        from hotshelf.log import open_log

        started = time.perf_counter()
        cfg, metrics = self.config, self.metrics
        try:
            self.events_log = open_log(cfg, "events", observer=metrics.observer("events"))
            self.catalog_log = open_log(cfg, "catalog", observer=metrics.observer("catalog"))
            self.catalog = CatalogView(self.catalog_log)
            items_applied = self.catalog.catch_up()
            dedup_ids = self.dedup.rebuild(self.events_log)
        except BaseException:
            self.close()  # release what did open (the log directories are locked)
            raise
        recovery = {"events": _recovery(self.events_log), "catalog": _recovery(self.catalog_log)}
        self.damage = [
            Damage(topic, str(d.path), d.first_offset, d.last_offset, d.reason)
            for topic, report in recovery.items()
            if report is not None
            for d in report.damage
        ]
        metrics.watch_log("events", self.events_log.stats)
        metrics.watch_log("catalog", self.catalog_log.stats)
        _logger.info(
            "service.started",
            data_dir=cfg.data_dir,
            log_backend=cfg.log.backend,
            fsync=cfg.log.fsync,
            events_end_offset=self.events_log.end_offset,
            catalog_records_applied=items_applied,
            catalog_items=len(self.catalog),
            dedup_ids=dedup_ids,
            dedup_window_s=cfg.events.dedup_window_s,
            max_body_bytes=cfg.server.max_body_bytes,
            max_events_per_request=cfg.server.max_events_per_request,
            access_log=cfg.server.access_log,
            recovery={
                topic: None if r is None else {
                    "truncated_tail_bytes": r.truncated_tail_bytes, "damage": len(r.damage)
                }
                for topic, r in recovery.items()
            },
            recovery_damage=[msgspec.to_builtins(d) for d in self.damage],
            seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip
        for damage in self.damage:
            _logger.warning("log.damage_found", **msgspec.structs.asdict(damage))

    def apply_retention(self) -> int:
        """Drop events past the configured age/size (the catalog is never trimmed)."""
        log = self.events_log
        if log is None or self._closing:
            return 0
        dropped = log.apply_retention()
        if dropped:
            _logger.info("log.retention", topic="events", dropped=dropped,
                         start_offset=log.start_offset)  # fmt: skip
        return dropped

    def close(self) -> None:
        """Close both logs (appends in flight are written first)."""
        self._closing = True
        for log in (self.events_log, self.catalog_log):
            if log is not None:
                log.close()
        self.events_log = self.catalog_log = None
        _logger.info("service.stopped")

    # -- events -------------------------------------------------------------------------

    async def ingest_events(self, body: bytes, content_type: str | None) -> EventsAccepted:
        """Validate, normalise, de-duplicate and durably append one request's events."""
        cfg = self.config
        log = self._events_log()
        events = decode_events(body, content_type, cfg.events, cfg.server)
        now = _now_ms()
        fresh, duplicates = self.dedup.filter(normalize(events, now, cfg.events), now_ms=now)
        first = last = None
        if fresh:
            result = await self._append(log, fresh)
            first, last = result.first_offset, result.last_offset
            self.metrics.events_accepted.inc(len(fresh))
        self.metrics.events_duplicate.inc(duplicates)
        return EventsAccepted(len(fresh), duplicates, first, last)

    async def _append(self, log: EventLog, fresh: list[StoredEvent]) -> AppendResult:
        values = [encode_stored_event(e) for e in fresh]
        dedup = self.dedup

        def settle(task: asyncio.Future[AppendResult]) -> None:
            if task.cancelled() or task.exception() is not None:
                dedup.release(fresh)
            else:
                dedup.confirm(fresh)

        # Shielded: if the request is cancelled the append still runs to its end, and
        # the reservations are settled by its real outcome, not by the cancellation.
        task = asyncio.ensure_future(log.append_async(values))
        task.add_done_callback(settle)
        return await asyncio.shield(task)

    # -- catalog ------------------------------------------------------------------------

    async def upsert_items(self, body: bytes, content_type: str | None) -> ItemsAccepted:
        """Append one item or an array of items to the catalog log, then apply them."""
        if media_kind(content_type) != "json":
            raise UnsupportedMediaTypeError("items are sent as application/json")
        server = self.config.server
        if len(body) > server.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body is {len(body)} bytes; the limit is {server.max_body_bytes}"
            )
        items = _decode_items(body)
        if len(items) > server.max_events_per_request:
            raise PayloadTooLargeError(
                f"{len(items)} items in one request; the limit is {server.max_events_per_request}"
            )
        if not items:
            raise ValidationError("no items in the request body")
        result = await self._catalog().upsert_async(items)
        return ItemsAccepted(len(items), result.first_offset, result.last_offset)

    def get_item(self, item_id: str) -> Item:
        """The catalog item; ``NotFoundError`` when unknown."""
        return self._catalog().get(item_id)

    # -- health -------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        """Whether the service can take traffic, with the checks that say why not."""
        checks: dict[str, str] = {}
        body: dict[str, Any] = {}
        if self._closing or self.events_log is None:
            checks["events_log"] = "not open"
        else:
            try:
                body["events_end_offset"] = self.events_log.end_offset
                checks["events_log"] = "ok"
            except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
                checks["events_log"] = f"failed: {exc}"
        if self._closing or self.catalog is None:
            checks["catalog"] = "not open"
        else:
            try:
                self.catalog.catch_up()
                body["catalog_items"] = len(self.catalog)
                checks["catalog"] = "ok"
            except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
                checks["catalog"] = f"failed: {exc}"
        ready = all(v == "ok" for v in checks.values())
        return Readiness(ready, checks, dedup_ids=len(self.dedup), damage=self.damage, **body)

    # -- helpers ------------------------------------------------------------------------

    def _events_log(self) -> EventLog:
        if self.events_log is None or self._closing:
            raise UnavailableError("the service is starting or stopping")
        return self.events_log

    def _catalog(self) -> CatalogView:
        if self.catalog is None or self._closing:
            raise UnavailableError("the service is starting or stopping")
        return self.catalog


def _decode_items(body: bytes) -> list[Item]:
    try:
        value = _items_decoder.decode(body)
    except msgspec.ValidationError as exc:
        message, sep, where = str(exc).partition(" - at `")
        path = where.rstrip("`") if sep else "$"
        raise ValidationError("invalid item", [FieldProblem(path, message)]) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        problem = (
            "the body is not valid UTF-8"
            if isinstance(exc, UnicodeDecodeError)
            else (f"malformed JSON: {exc}")
        )
        raise ValidationError("malformed request body", [FieldProblem("$", problem)]) from None
    return value if isinstance(value, list) else [value]


def _recovery(log: EventLog) -> VerifyReport | None:
    """What the log found when it opened (the file backend reports it), if anything."""
    report = getattr(log, "recovery", None)
    return report if isinstance(report, VerifyReport) else None
