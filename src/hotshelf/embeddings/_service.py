"""``EmbeddingService``: the encoder, the two-tier store, the index and the job, and the
queries the API answers from them (embeddings, similar items, search, rank).

``start`` loads the encoder, fills the index from the store's vectors and encodes what
changed in the catalog since the last run; a daemon thread then follows the catalog
log every ``embeddings.refresh_s`` and re-encodes changed items. Queries are plain
blocking calls: inference and the index release the GIL, and the app runs them in
worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import msgspec
import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from hotshelf.embeddings._images import ImageFusion
from hotshelf.embeddings._index import VectorIndex, open_index
from hotshelf.embeddings._job import EmbeddingJob, JobReport, Progress
from hotshelf.errors import FieldProblem, NotFoundError, UnavailableError, ValidationError
from hotshelf.monitoring import get_logger
from hotshelf.stream import ItemScore

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from hotshelf.catalog import CatalogView
    from hotshelf.config import Config, EmbeddingsConfig
    from hotshelf.embeddings._store import Fetch, TwoTierStore
    from hotshelf.log import EventLog
    from hotshelf.models import TextEncoder

__all__ = ["EmbeddingService", "RankedScore", "open_store"]

_logger = get_logger("hotshelf.embeddings")


class _ServiceCollector:
    """``hotshelf_embeddings_*``: what is embedded, what is not yet, what was encoded, and
    the photos left out (by reason)."""

    def __init__(self, service: EmbeddingService) -> None:
        self._service = service

    def describe(self) -> list[Metric]:
        return self._families(0, 0, 0, {})

    def collect(self) -> list[Metric]:
        service = self._service
        problems = service.images.problems if service.images is not None else {}
        return self._families(len(service.job or ()), service.lag(), service.encoded, problems)

    @staticmethod
    def _families(items: int, lag: int, encoded: int, problems: dict[str, int]) -> list[Metric]:
        skipped = CounterMetricFamily(
            "hotshelf_embeddings_image_problems",
            "Item photos left out of embeddings (missing, outside_root, too_large, unreadable,"
            " not_a_file): those items are embedded from their text alone.",
            labels=["reason"],
        )
        for reason, count in sorted(problems.items()):
            skipped.add_metric([reason], count)
        return [
            GaugeMetricFamily("hotshelf_embeddings_items", "Catalog items embedded.", items),
            GaugeMetricFamily("hotshelf_embeddings_lag_records",
                              "Catalog log records not embedded yet.", lag),
            CounterMetricFamily("hotshelf_embeddings_encoded",
                                "Items encoded by the embedding job.", encoded),
            skipped,
        ]  # fmt: skip


class RankedScore(msgspec.Struct, frozen=True):
    """A candidate's relevance to a query: cosine similarity, or None without a vector."""

    item_id: str
    score: float | None


def _image_fusion(cfg: EmbeddingsConfig, text_dim: int) -> ImageFusion | None:
    """The photo half of items' vectors, loaded and warm, when ``image_weight`` > 0."""
    from pathlib import Path

    from hotshelf.models import ImageEncoder

    if cfg.image_weight <= 0 or cfg.image_root is None:
        return None
    encoder = ImageEncoder(threads=cfg.threads)
    encoder.load()
    encoder.warm_up()
    return ImageFusion(
        encoder, Path(cfg.image_root), weight=cfg.image_weight, dim=cfg.image_dim,
        text_dim=text_dim, max_bytes=cfg.max_image_bytes,
    )  # fmt: skip


def open_store(config: Config, dim: int, registry: CollectorRegistry | None) -> TwoTierStore:
    """The two-tier store ``config.embeddings`` describes: a local hot tier over a
    memory-mapped file under ``data_dir`` (the default) or Redis."""
    from hotshelf.embeddings._local_tier import LocalTier
    from hotshelf.embeddings._store import TwoTierStore
    from hotshelf.embeddings._tier import EmbeddingTier

    cfg = config.embeddings
    remote: EmbeddingTier
    if cfg.backend == "redis":
        from hotshelf.embeddings._redis_tier import RedisTier

        # a request that missed locally reads Redis itself: the read timeout is its deadline
        deadline_s = cfg.remote_deadline_ms / 1000
        remote = RedisTier(cfg.redis_url, dim, prefix=f"{cfg.redis_prefix}:",
                           read_timeout_s=deadline_s, connect_timeout_s=deadline_s)  # fmt: skip
    else:
        from hotshelf.embeddings._mmap_tier import MmapTier

        remote = MmapTier(config.data_path / "embeddings" / "vectors", dim)
    return TwoTierStore(
        LocalTier(dim, cfg.local_capacity),
        remote,
        remote_deadline_ms=cfg.remote_deadline_ms,
        registry=registry,
    )


class EmbeddingService:
    """Product embeddings and the questions asked of them."""

    def __init__(
        self,
        config: Config,
        catalog: CatalogView,
        catalog_log: EventLog,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.catalog_log = catalog_log
        self._registry = registry
        self.encoder: TextEncoder | None = None
        self.images: ImageFusion | None = None
        self.store: TwoTierStore | None = None
        self.index: VectorIndex | None = None
        self.job: EmbeddingJob | None = None
        self.last_run: JobReport | None = None
        self.encoded = 0  # items encoded since start
        self.generation = 0  # bumped by every run that changed vectors (caches key on it)
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._job_lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------------------

    def start(self, *, follow: bool = True) -> None:
        """Load the model, the store and the index (from the vectors stored before); then,
        with ``follow``, encode catalog changes in a daemon thread, first at once and then
        every ``embeddings.refresh_s``."""
        from pathlib import Path

        from hotshelf.models import load_text_encoder

        cfg = self.config.embeddings
        model_dir = Path(cfg.model_dir) if cfg.model_dir else None
        encoder = load_text_encoder(
            model_dir, threads=cfg.threads, max_length=cfg.max_text_tokens,
            batch_size=cfg.batch_size,
        )  # fmt: skip
        encoder.warm_up()
        self.encoder = encoder
        self.images = _image_fusion(cfg, encoder.dim)
        dim = encoder.dim if self.images is None else self.images.dim
        self.store = open_store(self.config, dim, self._registry)
        if self._registry is not None:
            self._registry.register(_ServiceCollector(self))
        self.catalog.catch_up()
        self.index = open_index(cfg, dim, len(self.catalog))
        self.job = EmbeddingJob(
            self.catalog, self.catalog_log, encoder, self.store, self.index,
            self.config.data_path / "embeddings", description_chars=cfg.description_chars,
            images=self.images,
        )  # fmt: skip
        loaded = self.job.load_index()
        _logger.info("embeddings.started", model=self.job.version, backend=cfg.backend,
                     index=type(self.index).__name__, loaded=loaded, dim=dim)  # fmt: skip
        if follow:
            self._thread = threading.Thread(
                target=self._follow, name="hotshelf-embeddings", daemon=True
            )
            self._thread.start()

    def refresh(self, progress: Progress | None = None) -> JobReport:
        """Encode the catalog changes not reflected yet (one run of the job)."""
        with self._job_lock:
            report = self._ready_job().run(progress)
        self.last_run = report
        self.encoded += report.encoded
        if report.encoded or report.removed:
            self.generation += 1
        return report

    @property
    def caught_up_once(self) -> bool:
        """Whether a run has finished since start: the embeddings reflect the catalog as
        it was then, at least."""
        return self.last_run is not None

    def _follow(self) -> None:
        interval = self.config.embeddings.refresh_s
        first = True
        while first or not self._stop.wait(interval):
            try:
                if self.last_run is None or self.lag() > 0:
                    report = self.refresh()
                    _logger.info("embeddings.refreshed", encoded=report.encoded,
                                 removed=report.removed, offset=report.offset,
                                 seconds=round(report.seconds, 3))  # fmt: skip
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                _logger.exception("embeddings.refresh_failed")
            else:
                self.failure = None
            first = False

    def lag(self) -> int:
        """Catalog records not reflected in the embeddings yet."""
        job = self.job
        return 0 if job is None else max(0, self.catalog_log.end_offset - job.offset)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60.0)
        with self._job_lock:
            if self.store is not None:
                self.store.close()
            if self.encoder is not None:
                self.encoder.close()
            if self.images is not None:
                self.images.encoder.close()

    def _ready_job(self) -> EmbeddingJob:
        if self.job is None:
            raise UnavailableError("the embedding service is not started")
        return self.job

    def _ready(self) -> tuple[TextEncoder, TwoTierStore, VectorIndex]:
        if self.encoder is None or self.store is None or self.index is None:
            raise UnavailableError("the embedding service is not started")
        return self.encoder, self.store, self.index

    # -- queries ------------------------------------------------------------------------

    def check_known(self, item_ids: Sequence[str]) -> None:
        """``NotFoundError`` naming the ids that are not in the catalog."""
        unknown = [item_id for item_id in item_ids if item_id not in self.catalog]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise NotFoundError(f"not in the catalog: {shown}{more}")

    def fetch(self, item_ids: Sequence[str]) -> Fetch:
        """The items' vectors from the two-tier store (never raises for a store outage);
        ``NotFoundError`` names ids that are not in the catalog."""
        self.check_known(item_ids)
        return self.lookup(item_ids)

    def lookup(self, item_ids: Sequence[str], *, wait: bool = True) -> Fetch:
        """Like ``fetch``, but ids without a vector (unknown ones too) are just not found.
        ``wait=False``: never wait on the remote tier (``TwoTierStore.get_many_nowait``):
        ids the local tier lacks are not found this time."""
        _, store, _ = self._ready()
        return store.get_many(item_ids) if wait else store.get_many_nowait(item_ids)

    def nearest(self, vector: np.ndarray, k: int, exclude: Collection[str] = ()) -> list[ItemScore]:
        """The ``k`` catalog items nearest a unit ``vector``."""
        _, _, index = self._ready()
        return index.search(vector, k, exclude=exclude)

    def nearest_many(
        self, vectors: np.ndarray, k: int, *, excludes: Sequence[Collection[str]]
    ) -> list[list[ItemScore]]:
        """``nearest`` for each row of ``vectors``, in one pass over the index."""
        _, _, index = self._ready()
        return index.search_many(vectors, k, excludes=excludes)

    def encode_query(self, query: str) -> np.ndarray:
        """The query's vector (its inner product with an item is the text cosine);
        ``ValidationError`` for an empty or oversized query."""
        encoder, _, _ = self._ready()
        text = query.strip()
        limit = self.config.embeddings.max_query_chars
        if not text:
            raise ValidationError("invalid query", [FieldProblem("query", "must not be blank")])
        if len(text) > limit:
            problem = FieldProblem("query", f"longer than {limit} characters")
            raise ValidationError("invalid query", [problem])
        vectors: np.ndarray = encoder.predict([text])
        if self.images is not None:
            vectors = self.images.query(vectors)
        vector: np.ndarray = vectors[0]
        return vector

    def similar(self, item_id: str, k: int) -> list[ItemScore]:
        """The ``k`` items whose embeddings (text, and photo where configured) are
        nearest ``item_id``'s."""
        _, _, index = self._ready()
        fetched = self.fetch([item_id])
        if not fetched.found[0]:
            raise UnavailableError(f"item {item_id!r} has no embedding yet; try again shortly")
        return index.search(fetched.vectors[0], k, exclude={item_id})

    def search(self, query: str, k: int, exclude: Sequence[str] = ()) -> list[ItemScore]:
        """The ``k`` catalog items nearest the query text."""
        return self.nearest(self.encode_query(query), k, exclude=set(exclude))

    def rank(self, query: str, item_ids: Sequence[str]) -> list[RankedScore]:
        """``item_ids`` scored by relevance to ``query``, best first; candidates without a
        vector (not embedded yet, or the store unreachable) come last with no score."""
        vector = self.encode_query(query)
        fetched = self.fetch(item_ids)
        scores = fetched.vectors @ vector
        ranked = [
            RankedScore(item_id, float(score) if found else None)
            for item_id, score, found in zip(item_ids, scores, fetched.found, strict=True)
        ]
        ranked.sort(key=lambda r: (r.score is None, -(r.score or 0.0)))
        return ranked
