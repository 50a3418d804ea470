"""``/v1/recommend`` and ``/v1/metrics/online`` in the service.

``RecommendRunner`` puts the pieces of ``hotshelf.recommend`` on the service's state:
the ``Recommender`` reads the stream processor's state (or the partitions' snapshots),
the embedding service and the current collaborative model; one feed thread follows
the events log and hands every event to attribution (the online metrics) and to the
recommender (list invalidation, purchase exclusions); a trainer thread loads the
saved model at start and, with ``recommend.cf.retrain_s``, retrains from the log and
swaps the new model in; a segments thread rebuilds the generic lists that requests
found stale. Served lists are appended to the events log as impressions.

A runner with ``follower=True`` (in a recommend replica, ``_replica``) trains and
attributes nothing (the server does both): its trainer thread watches the saved
model's ``current`` pointer every ``MODEL_POLL_S`` and loads each new model the
server saves.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import msgspec

from hotshelf.errors import ValidationError
from hotshelf.events import encode_stored_event
from hotshelf.monitoring import get_logger
from hotshelf.recommend import Recommendations, RecommendRequest, impression_event
from hotshelf.recommend._attribution import Attribution
from hotshelf.recommend._attribution_feed import AttributionFeed
from hotshelf.recommend._cache import ListCacheCollector
from hotshelf.recommend._cf_files import current_dir
from hotshelf.recommend._collaborative import load_current, train_from_logs
from hotshelf.recommend._engine import Recommender, StreamLike
from hotshelf.recommend._online_metrics import OnlineMetrics
from hotshelf.serving._queries import decode_json

if TYPE_CHECKING:
    from hotshelf.catalog import CatalogView
    from hotshelf.config import Config
    from hotshelf.embeddings import EmbeddingReplica, EmbeddingService
    from hotshelf.log import EventLog
    from hotshelf.monitoring import Metrics
    from hotshelf.serving._stream import RemoteReader, StreamRunner

__all__ = ["MODEL_POLL_S", "RecommendRunner", "decode_request"]

MODEL_POLL_S = 1.0  # how often a follower looks for a newly saved model

_logger = get_logger("hotshelf.recommend")
_request_decoder = msgspec.json.Decoder(RecommendRequest)


def decode_request(body: bytes) -> RecommendRequest:
    """The request body; ``ValidationError`` naming the field that is wrong."""
    request: RecommendRequest = decode_json(body, _request_decoder, "recommendation request")
    return request


class RecommendRunner:
    """The recommender and the threads that keep it current; ``close`` stops them."""

    def __init__(
        self,
        config: Config,
        catalog: CatalogView,
        events_log: EventLog,
        batch_log: EventLog | None,
        *,
        stream: StreamRunner | RemoteReader | None,
        embeddings: EmbeddingService | EmbeddingReplica | None,
        metrics: Metrics,
        follower: bool = False,
    ) -> None:
        from hotshelf.serving._stream import StreamRunner

        self.config = config
        self.events_log = events_log
        self.batch_log = batch_log
        source: StreamLike | None = None
        offsets = None
        if isinstance(stream, StreamRunner):
            source, offsets = stream.processor, stream.processor.offsets
        elif stream is not None:
            source = stream.source
        self.recommender = Recommender(
            config.recommend, catalog, stream=source, embeddings=embeddings, offsets=offsets
        )
        self.feed = AttributionFeed(
            events_log,
            None if follower else Attribution(config.recommend.experiments),
            batch_log=batch_log,
            registry=metrics.registry,
            on_event=self.recommender.observe,
        )
        ListCacheCollector(self.recommender.cache.stats).register(metrics.registry)
        self.follower = follower
        self.failure: BaseException | None = None
        self._model_dir: str | None = None  # the saved model's directory, as loaded
        self._stop = threading.Event()
        self._trainer = threading.Thread(target=self._train, name="hotshelf-cf", daemon=True)
        self._segments = threading.Thread(
            target=self._refresh_segments, name="hotshelf-segments", daemon=True
        )

    def start(self) -> None:
        """Load the saved model (if any) now; retrain in the background when configured."""
        self._model_dir = _current(self.config)
        model = load_current(self.config.data_path)
        self.recommender.set_model(model)
        _logger.info("recommend.model_loaded", version=model.version if model else None)
        self.feed.start()
        self._trainer.start()
        self._segments.start()

    def _refresh_segments(self) -> None:
        """Rebuild stale segment lists as requests report them, until ``close``."""
        due = self.recommender.segments_due
        while not self._stop.is_set():
            if not due.wait(0.5):
                continue
            try:
                self.recommender.refresh_segments()
            except Exception:  # requests rebuild what is too old themselves meanwhile
                _logger.exception("recommend.segment_refresh_failed")
                self._stop.wait(1.0)

    def _train(self) -> None:
        """Precompute the current model's lists, then (``retrain_s``) retrain and again."""
        self._precompute()
        if self.follower:
            self._watch_model()
            return
        every = self.config.recommend.cf.retrain_s
        while every > 0 and not self._stop.wait(every):
            try:
                trained = self.retrain()
            except Exception as exc:  # the service goes on with the model it has
                self.failure = exc
                _logger.exception("recommend.train_failed")
                continue
            if trained:
                self._precompute()

    def _watch_model(self) -> None:
        """Load each model the server saves (a follower's trainer thread), until ``close``."""
        while not self._stop.wait(MODEL_POLL_S):
            try:
                if _current(self.config) == self._model_dir:
                    continue
                self._model_dir = _current(self.config)
                model = load_current(self.config.data_path)
            except Exception as exc:  # a model half-pruned under us: the next poll retries
                self.failure = exc
                self._model_dir = None
                _logger.exception("recommend.model_load_failed")
                continue
            self.recommender.set_model(model)
            self.failure = None
            _logger.info("recommend.model_loaded", version=model.version if model else None)
            self._precompute()

    def _precompute(self) -> None:
        started = time.perf_counter()
        # the neighbours first: a few hundred ms at most, where the CF lists take seconds
        neighbours = self.recommender.precompute_neighbours(stop=self._stop.is_set)
        made = self.recommender.precompute(stop=self._stop.is_set)
        if made or neighbours:
            _logger.info("recommend.precomputed", lists=made, neighbour_lists=neighbours,
                         seconds=round(time.perf_counter() - started, 3))  # fmt: skip

    def retrain(self) -> bool:
        """Train on the logs as they are now and serve the new model; False (nothing
        done) when the logs hold nothing new since the current model, or no feedback."""
        ends = {"events": self.events_log.end_offset}
        if self.batch_log is not None:
            ends["events.batch"] = self.batch_log.end_offset
        current = self.recommender.model
        if current is not None and all(current.offsets.get(t) == n for t, n in ends.items()):
            return False
        try:
            model = train_from_logs(self.config, self.events_log, self.batch_log)
        except ValidationError:  # no feedback events yet: nothing to learn from
            return False
        model.save(self.config.data_path)
        self.recommender.set_model(model)
        self.failure = None
        return True

    def recommend(self, request: RecommendRequest) -> Recommendations:
        """One request's list (blocking: it reads the stream state under its lock)."""
        return self.recommender.recommend(request, time.time_ns() // 1_000_000)

    def serve(self, request: RecommendRequest) -> tuple[Recommendations, bytes]:
        """``recommend``, and the encoded impression event that logs the list."""
        served = self.recommend(request)
        return served, encode_stored_event(impression_event(request, served))

    def online_metrics(self) -> OnlineMetrics:
        """Impressions, clicks and purchases per variant and route, as attributed so far."""
        return self.feed.snapshot()

    def close(self) -> None:
        self._stop.set()
        self.feed.close()
        for thread in (self._trainer, self._segments):
            if thread.is_alive():
                thread.join()


def _current(config: Config) -> str | None:
    directory = current_dir(config.data_path)
    return None if directory is None else directory.name
