"""The ASGI application: routes, the one error handler, metrics, access log, lifespan.

Every ``HotshelfError`` becomes its status with ``to_dict()`` as the JSON body; an
unexpected exception is logged with its traceback and answered with a bare 500, so a
response never carries a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

from hotshelf.config import Config
from hotshelf.errors import HotshelfError
from hotshelf.monitoring import CONTENT_TYPE, Metrics, get_logger
from hotshelf.serving._http import (
    ClientDisconnectError,
    Receive,
    Request,
    Response,
    Router,
    Scope,
    Send,
    error_json,
    error_response,
    json_response,
)
from hotshelf.serving._openapi import openapi_document
from hotshelf.serving._replicas import ReplicaAnswer
from hotshelf.serving._schemas import Health
from hotshelf.serving._service import Service

__all__ = ["HotshelfApp", "create_app"]

_logger = get_logger("hotshelf.serving")
# How often the events log drops segments past retention (cheap when nothing is due).
RETENTION_INTERVAL_S = 60.0
_access = get_logger("hotshelf.access")
_UNMATCHED = "<unmatched>"  # route label for unknown paths: keeps metric cardinality bounded


def create_app(config: Config) -> HotshelfApp:
    """The ASGI app for ``config``; the logs open on lifespan startup."""
    return HotshelfApp(config)


class HotshelfApp:
    """hotshelf's HTTP API as a bare ASGI 3 application."""

    def __init__(self, config: Config, *, metrics: Metrics | None = None) -> None:
        self.config = config
        self.service = Service(config, metrics)
        self.metrics = self.service.metrics
        self.router = Router()
        self._access_log = config.server.access_log
        for template, method, handler in (
            ("/v1/events", "POST", self._post_events),
            ("/v1/items", "POST", self._post_items),
            ("/v1/items/{item_id}", "GET", self._get_item),
            ("/v1/items/{item_id}/related", "GET", self._get_related),
            ("/v1/items/{item_id}/similar", "GET", self._get_similar),
            ("/v1/embeddings", "POST", self._post_embeddings),
            ("/v1/search", "POST", self._post_search),
            ("/v1/rank", "POST", self._post_rank),
            ("/v1/trending", "GET", self._get_trending),
            ("/v1/popular", "GET", self._get_popular),
            ("/v1/bots", "GET", self._get_bots),
            ("/v1/recommend", "POST", self._post_recommend),
            ("/v1/metrics/online", "GET", self._get_online_metrics),
            ("/healthz", "GET", self._healthz),
            ("/readyz", "GET", self._readyz),
            ("/metrics", "GET", self._metrics),
            ("/openapi.json", "GET", self._openapi),
        ):
            self.router.add(template, method, handler)
        self._openapi_body = json_response(openapi_document()).body
        self._retention: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets are not part of the API: returning closes them

    # -- lifespan -----------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the logs (off the event loop: recovery and the dedup rebuild read disk)."""
        await asyncio.to_thread(self.service.start)
        self.service.start_replicas()
        # What start-up loaded (modules, the catalog, the dedup window) lives as long as
        # the process; frozen, the collector stops re-scanning it on full collections.
        gc.collect()
        gc.freeze()
        self._retention = asyncio.create_task(self._retention_loop())

    async def shutdown(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        await self.service.close_replicas()
        await self.service.impressions.drain()  # before the log closes
        await asyncio.to_thread(self.service.close)

    async def _retention_loop(self) -> None:
        """Apply log retention now and then, off the event loop; a failure is logged, not fatal."""
        while True:
            await asyncio.sleep(RETENTION_INTERVAL_S)
            try:
                await asyncio.to_thread(self.service.apply_retention)
            except Exception:
                _logger.exception("log.retention_failed")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    _logger.exception("service.start_failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    _logger.exception("service.stop_failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests -----------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        route = _UNMATCHED
        try:
            response, route = await self._dispatch(request)
        except ClientDisconnectError:
            return
        await response.send(send)
        elapsed = time.perf_counter() - started
        self.metrics.observe_request(route, request.method, response.status, elapsed)
        if self._access_log:
            _access.info(
                "request",
                method=request.method,
                path=request.path,
                route=route,
                status=response.status,
                ms=round(elapsed * 1000, 3),
            )

    async def _dispatch(self, request: Request) -> tuple[Response, str]:
        match = self.router.match(request.path)
        if match is None:
            return error_json(404, "not_found", f"no route for {request.path}"), _UNMATCHED
        route, methods, params = match
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(sorted(methods))
            response = error_json(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {route}; use {allow}",
            )
            response.headers = [(b"allow", allow.encode())]
            return response, route
        request.path_params = params
        try:
            return await handler(request), route
        except ClientDisconnectError:
            raise
        except HotshelfError as exc:
            return error_response(exc), route
        except Exception:
            _logger.exception("request.failed", method=request.method, path=request.path)
            return error_json(500, "internal_error", "internal error"), route

    # -- handlers -----------------------------------------------------------------------

    async def _post_events(self, request: Request) -> Response:
        try:
            body = await request.body(self.config.server.max_body_bytes)
            accepted = await self.service.ingest_events(body, request.header(b"content-type"))
        except HotshelfError as exc:
            if exc.status < 500:
                self.metrics.event_requests_rejected.labels(exc.code).inc()
            raise
        return json_response(accepted)

    async def _post_items(self, request: Request) -> Response:
        body = await request.body(self.config.server.max_body_bytes)
        accepted = await self.service.upsert_items(body, request.header(b"content-type"))
        return json_response(accepted)

    async def _get_item(self, request: Request) -> Response:
        return json_response(self.service.get_item(request.path_params["item_id"]))

    # The stream queries wait for the processor's lock (held while it applies a batch):
    # in a worker thread, so the event loop keeps serving ingest meanwhile.

    async def _get_trending(self, request: Request) -> Response:
        answer = await asyncio.to_thread(self.service.ranked, "trending", request.query)
        return json_response(answer)

    async def _get_popular(self, request: Request) -> Response:
        answer = await asyncio.to_thread(self.service.ranked, "popular", request.query)
        return json_response(answer)

    async def _get_related(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        answer = await asyncio.to_thread(self.service.related, item_id, request.query)
        return json_response(answer)

    async def _get_bots(self, request: Request) -> Response:
        return json_response(await asyncio.to_thread(self.service.bots, request.query))

    # Embedding queries run inference, a store read with a deadline and an index search:
    # in a worker thread too (onnxruntime and usearch release the GIL while they work).

    async def _get_similar(self, request: Request) -> Response:
        item_id = request.path_params["item_id"]
        answer = await asyncio.to_thread(self.service.similar, item_id, request.query)
        return json_response(answer)

    async def _post_embeddings(self, request: Request) -> Response:
        body = await request.body(self.config.server.max_body_bytes)
        kind = request.header(b"content-type")
        return json_response(await asyncio.to_thread(self.service.embedding_vectors, body, kind))

    async def _post_search(self, request: Request) -> Response:
        body = await request.body(self.config.server.max_body_bytes)
        kind = request.header(b"content-type")
        return json_response(await asyncio.to_thread(self.service.search, body, kind))

    async def _post_rank(self, request: Request) -> Response:
        body = await request.body(self.config.server.max_body_bytes)
        kind = request.header(b"content-type")
        return json_response(await asyncio.to_thread(self.service.rank, body, kind))

    async def _post_recommend(self, request: Request) -> Response:
        body = await request.body(self.config.server.max_body_bytes)
        answer = await self.service.recommend(body, request.header(b"content-type"))
        if isinstance(answer, ReplicaAnswer):
            return Response(answer.status, answer.body)
        return json_response(answer)

    async def _get_online_metrics(self, request: Request) -> Response:
        return json_response(self.service.online_metrics())

    async def _healthz(self, request: Request) -> Response:
        return json_response(Health())

    async def _readyz(self, request: Request) -> Response:
        readiness = self.service.readiness()
        return json_response(readiness, 200 if readiness.ready else 503)

    async def _metrics(self, request: Request) -> Response:
        # Off the loop too: the stream collector reads the processor under its lock.
        body = await asyncio.to_thread(self.metrics.render)
        return Response(200, body, CONTENT_TYPE.encode())

    async def _openapi(self, request: Request) -> Response:
        return Response(200, self._openapi_body)
