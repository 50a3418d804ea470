"""What the HTTP API does, apart from HTTP: the logs, the catalog, the dedup window, and
the stream processor whose state the read endpoints answer from.

``Service`` knows nothing of ASGI, so the app in ``_app`` stays a thin adapter and a
benchmark can put another framework in front of the very same code.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from hotshelf.config import Config
from hotshelf.errors import (
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
from hotshelf.serving._impressions import ImpressionWriter
from hotshelf.serving._queries import BotsQuery, RankQuery, RelatedQuery, decode_json, parse_query
from hotshelf.serving._recommend import decode_request
from hotshelf.serving._schemas import (
    Bots,
    Damage,
    EventsAccepted,
    ItemsAccepted,
    RankedItems,
    Readiness,
    RelatedItems,
)

if TYPE_CHECKING:
    from hotshelf.catalog import CatalogView
    from hotshelf.embeddings import EmbeddingService
    from hotshelf.log import AppendResult, EventLog
    from hotshelf.recommend import Recommendations
    from hotshelf.recommend._online_metrics import OnlineMetrics
    from hotshelf.serving._embeddings import (
        EmbeddingQueries,
        Embeddings,
        RankedCandidates,
        SearchResults,
        SimilarItems,
    )
    from hotshelf.serving._recommend import RecommendRunner
    from hotshelf.serving._replicas import ReplicaAnswer, ReplicaPool
    from hotshelf.serving._stream import RemoteReader, StreamRunner
    from hotshelf.stream import StreamProcessor

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
        self.batch_log: EventLog | None = None  # events.batch, opened for the stream only
        self.catalog: CatalogView | None = None
        self.damage: list[Damage] = []
        self.stream: StreamRunner | RemoteReader | None = None
        self.embeddings: EmbeddingService | None = None
        self.embedding_queries: EmbeddingQueries | None = None
        self.recommend_runner: RecommendRunner | None = None
        self.replicas: ReplicaPool | None = None
        self.impressions = ImpressionWriter(self._events_log, self.metrics.impressions_unlogged.inc)
        self._closing = False

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the logs, catch the catalog up, rebuild the dedup window and start the
        stream processor (``stream.serve``; both lanes: live events and the batch lane's
        ``events.batch`` that ``hotshelf ingest`` fills) from its snapshot."""
        from hotshelf.catalog import CatalogView
        from hotshelf.log import open_log
        from hotshelf.serving._stream import open_stream

        started = time.perf_counter()
        cfg, metrics = self.config, self.metrics
        try:
            self.events_log = open_log(cfg, "events", observer=metrics.observer("events"))
            self.catalog_log = open_log(cfg, "catalog", observer=metrics.observer("catalog"))
            self.catalog = CatalogView(self.catalog_log)
            items_applied = self.catalog.catch_up()
            dedup_ids = self.dedup.rebuild(self.events_log)
            if cfg.embeddings.serve:
                self._start_embeddings(self.catalog, self.catalog_log)
            if cfg.stream.serve:
                self.batch_log = open_log(
                    cfg, "events.batch", observer=metrics.observer("events.batch")
                )
                self.stream = open_stream(cfg, self.events_log, self.catalog_log, self.batch_log)
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
        if self.stream is not None and self.batch_log is not None:
            metrics.watch_log("events.batch", self.batch_log.stats)
            metrics.watch_stream(self._live_processor)
            self.stream.start()
        if cfg.recommend.serve:
            self._start_recommend(self.catalog, self.events_log)

    def _start_recommend(self, catalog: CatalogView, events_log: EventLog) -> None:
        """The recommender over the stream state, the embeddings and the saved CF model."""
        from hotshelf.serving._recommend import RecommendRunner

        runner = RecommendRunner(
            self.config,
            catalog,
            events_log,
            self.batch_log,
            stream=self.stream,
            embeddings=self.embeddings,
            metrics=self.metrics,
        )
        self.recommend_runner = runner
        runner.start()

    def start_replicas(self) -> None:
        """Start ``recommend.replicas`` recommend replicas in the background (on the
        event loop, after ``start``): requests go to them once they are ready."""
        from hotshelf.serving._replicas import ReplicaPool

        cfg = self.config
        if cfg.recommend.serve and cfg.recommend.replicas > 0 and self.replicas is None:
            self.replicas = ReplicaPool(cfg, self.metrics, lambda: self._catalog().offset)
            self.replicas.start()

    async def close_replicas(self) -> None:
        """Stop the replicas (requests in flight on them are answered here)."""
        if self.replicas is not None:
            await self.replicas.close()

    def _start_embeddings(self, catalog: CatalogView, catalog_log: EventLog) -> None:
        """Load the encoder, store and index; changed items are encoded in the background."""
        from hotshelf.embeddings import EmbeddingService
        from hotshelf.serving._embeddings import EmbeddingQueries

        service = EmbeddingService(
            self.config, catalog, catalog_log, registry=self.metrics.registry
        )
        self.embeddings = service
        service.start(follow=True)
        self.embedding_queries = EmbeddingQueries(service, self.config.embeddings)

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
        """Stop the stream processor (it writes a last snapshot), then close the logs
        (appends in flight are written first)."""
        self._closing = True
        if self.recommend_runner is not None:
            self.recommend_runner.close()
        if self.stream is not None:
            self.stream.close()
        if self.embeddings is not None:
            self.embeddings.close()
        for log in (self.events_log, self.catalog_log, self.batch_log):
            if log is not None:
                log.close()
        self.events_log = self.catalog_log = self.batch_log = None
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
            if self.recommend_runner is not None:
                self.recommend_runner.recommender.note_purchases(fresh)
            if self.replicas is not None:
                self.replicas.note_appended(fresh, last + 1)
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
        self.impressions.flush()  # what was served before these events precedes them
        task = asyncio.ensure_future(log.append_async(values))
        task.add_done_callback(settle)
        return await asyncio.shield(task)

    # -- catalog ------------------------------------------------------------------------

    async def upsert_items(self, body: bytes, content_type: str | None) -> ItemsAccepted:
        """Append one item or an array of items to the catalog log, then apply them."""
        _require_json(content_type, "items")
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

    # -- stream state -------------------------------------------------------------------

    def ranked(self, which: Literal["trending", "popular"], params: dict[str, str]) -> RankedItems:
        """Trending or popular items for the query parameters ``params`` (blocking)."""
        runner = self._stream()
        return runner.ranked(which, parse_query(RankQuery, params))

    def related(self, item_id: str, params: dict[str, str]) -> RelatedItems:
        """Items engaged with in the same sessions as ``item_id`` (blocking)."""
        runner = self._stream()
        return runner.related(item_id, parse_query(RelatedQuery, params))

    def bots(self, params: dict[str, str]) -> Bots:
        """The visitors the bot filter flags now, and its counts (blocking)."""
        runner = self._stream()
        return runner.bots(parse_query(BotsQuery, params))

    # -- embeddings ---------------------------------------------------------------------

    def embedding_vectors(self, body: bytes, content_type: str | None) -> Embeddings:
        """``POST /v1/embeddings``: the vectors of the requested items (blocking)."""
        _require_json(content_type, "embedding requests")
        return self._embedding_queries().embeddings(body)

    def similar(self, item_id: str, params: dict[str, str]) -> SimilarItems:
        """``GET /v1/items/{item_id}/similar`` (blocking: a store read and a search)."""
        return self._embedding_queries().similar(item_id, params)

    def search(self, body: bytes, content_type: str | None) -> SearchResults:
        """``POST /v1/search`` (blocking: one inference and a search)."""
        _require_json(content_type, "search requests")
        return self._embedding_queries().search(body)

    def rank(self, body: bytes, content_type: str | None) -> RankedCandidates:
        """``POST /v1/rank`` (blocking: one inference and a store read)."""
        _require_json(content_type, "rank requests")
        return self._embedding_queries().rank(body)

    def _embedding_queries(self) -> EmbeddingQueries:
        if not self.config.embeddings.serve:
            raise UnavailableError("embeddings are off in this server (embeddings.serve = false)")
        if self.embedding_queries is None or self._closing:
            raise UnavailableError("the service is starting or stopping")
        return self.embedding_queries

    def _live_processor(self) -> StreamProcessor | None:
        """The processor while it runs (metrics read it at scrape time)."""
        from hotshelf.serving._stream import StreamRunner

        runner = self.stream
        if not isinstance(runner, StreamRunner) or self._closing or not runner.running:
            return None  # partitions report nothing here: they run in their own processes
        return runner.processor

    # -- recommendations ----------------------------------------------------------------

    async def recommend(
        self, body: bytes, content_type: str | None
    ) -> Recommendations | ReplicaAnswer:
        """``POST /v1/recommend``: the list, computed on the event loop, and logged as an
        impression (in a group a few ms later, see ``ImpressionWriter``: the answer
        does not wait for the disk).

        On the loop, not in a worker thread: the work is CPU under the GIL either way,
        and the hand-off to a thread and back cost ~15% of the server's CPU at 750
        requests/s (and its wake-ups most of the tail). Nothing in it waits on I/O: the
        stream lock is held at most one 64-record chunk or one segment rebuild, and
        embeddings are read without waiting on the store's remote tier.

        With ``recommend.replicas``, a replica computes it (``ReplicaPool``) and the
        answer is the replica's, as it sent it; the server computes it here when no
        replica is free or the one asked failed."""
        _require_json(content_type, "recommendation requests")
        runner = self._recommend_runner()
        request = decode_request(body)
        if self.replicas is not None:
            answer = await self.replicas.recommend(request, body)
            if answer is not None:
                if answer.impression is not None:
                    self.impressions.add(answer.impression)
                return answer
            runner = self._recommend_runner()  # the service may have begun to close
        served, impression = runner.serve(request)
        self.impressions.add(impression)
        return served

    def online_metrics(self) -> OnlineMetrics:
        """``GET /v1/metrics/online``: CTR and conversion per variant and route."""
        return self._recommend_runner().online_metrics()

    def _recommend_runner(self) -> RecommendRunner:
        if not self.config.recommend.serve:
            raise UnavailableError(
                "recommendations are off in this server (recommend.serve = false)"
            )
        if self.recommend_runner is None or self._closing:
            raise UnavailableError("the service is starting or stopping")
        return self.recommend_runner

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
        checks["stream"] = self._stream_check(body)
        checks["embeddings"] = self._embeddings_check(body)
        checks["recommend"] = self._recommend_check(body)
        ready = all(v in ("ok", "off") for v in checks.values())
        return Readiness(ready, checks, dedup_ids=len(self.dedup), damage=self.damage, **body)

    def _stream_check(self, body: dict[str, Any]) -> str:
        """The stream processor's readiness; its lag goes into ``body`` (not a condition:
        it catches up in the background)."""
        if not self.config.stream.serve:
            return "off"
        runner = self.stream
        if runner is None or self._closing:
            return "not running"
        if runner.failure is not None:
            return f"failed: {runner.failure}"
        try:
            body["stream_lag"] = runner.lag()
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            return f"failed: {exc}"
        return "ok"

    def _embeddings_check(self, body: dict[str, Any]) -> str:
        """Ready once the catalog as of start-up is embedded; later changes are a lag."""
        if not self.config.embeddings.serve:
            return "off"
        service = self.embeddings
        if service is None or self._closing:
            return "not running"
        if service.failure is not None:
            return f"failed: {service.failure}"
        body["embeddings_lag"] = service.lag()
        return "ok" if service.caught_up_once else "encoding the catalog"

    def _recommend_check(self, body: dict[str, Any]) -> str:
        """Ready without a collaborative model (routes that need one are skipped); its
        version and the attribution feed's lag go into ``body``."""
        if not self.config.recommend.serve:
            return "off"
        runner = self.recommend_runner
        if runner is None or self._closing:
            return "not running"
        model = runner.recommender.model
        body["recommend_model"] = model.version if model is not None else None
        body["attribution_lag"] = runner.feed.lag
        if self.replicas is not None:
            body["recommend_replicas_ready"] = self.replicas.ready
        if runner.feed.failure is not None:
            return f"failed: {runner.feed.failure}"
        return "ok"

    # -- helpers ------------------------------------------------------------------------

    def _events_log(self) -> EventLog:
        if self.events_log is None or self._closing:
            raise UnavailableError("the service is starting or stopping")
        return self.events_log

    def _stream(self) -> StreamRunner | RemoteReader:
        if not self.config.stream.serve:
            raise UnavailableError(
                "stream processing is off in this server (stream.serve = false); "
                "ask a server that runs it"
            )
        runner = self.stream
        if runner is None or self._closing:
            raise UnavailableError("the service is starting or stopping")
        if runner.failure is not None:
            raise UnavailableError(
                "the stream processor stopped after an error; see the server log (stream.failed)"
            )
        return runner

    def _catalog(self) -> CatalogView:
        if self.catalog is None or self._closing:
            raise UnavailableError("the service is starting or stopping")
        return self.catalog


def _require_json(content_type: str | None, what: str) -> None:
    if media_kind(content_type) != "json":
        raise UnsupportedMediaTypeError(f"{what} are sent as application/json")


def _decode_items(body: bytes) -> list[Item]:
    value = decode_json(body, _items_decoder, "item")
    return value if isinstance(value, list) else [value]


def _recovery(log: EventLog) -> VerifyReport | None:
    """What the log found when it opened (the file backend reports it), if anything."""
    report = getattr(log, "recovery", None)
    return report if isinstance(report, VerifyReport) else None
