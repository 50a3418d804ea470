"""``CollaborativeModel``: ALS or BPR factors from ``implicit``, served with fold-in.

Training is ``implicit``'s CPU code, on one thread and with ``cf.seed``: two fits on
the same interactions give the same factors, bit for bit, which is what makes a
model's ``version`` (algorithm, UTC time, a hash of the data and the settings) mean
something. ALS takes each cell as confidence ``1 + alpha * weight`` (Hu, Koren and
Volinsky); BPR only samples which cells are set, so event weights do not reach it.

Serving needs no ``implicit``: a score is a dot product with the item factors (for
BPR the last item column is a bias, and every visitor's last column is 1). A visitor
the model has not seen, or whose recent events it should reflect, is *folded in*:
their factors are solved from their items against the fixed item factors, the
least-squares step ALS itself takes (``recalculate_user``)::

    x = (YᵀY + λI + Σᵢ (cᵢ - 1) yᵢyᵢᵀ)⁻¹ Σᵢ cᵢ yᵢ     cᵢ = 1 + alpha * weightᵢ

BPR has no such step; its item factors (without the bias column) go through the same
regularised solve, which is what "looks like the items this visitor engaged with"
means in that space, and the bias is added back to the scores.

The model is read-only after ``fit``/``load``, so any number of threads may serve from
it; a folded-in visitor's list is kept by the recommender's list cache, not here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import numpy as np

from hotshelf.errors import ConfigError, ValidationError
from hotshelf.monitoring import get_logger
from hotshelf.recommend._cf_files import (
    ModelManifest,
    cf_root,
    current_dir,
    read_model,
    write_model,
)
from hotshelf.recommend._interactions import Interactions, read_interactions

if TYPE_CHECKING:
    from hotshelf.config import CollaborativeConfig, Config
    from hotshelf.log import EventLog

__all__ = ["CollaborativeModel", "load_current", "train_from_logs"]

_logger = get_logger("hotshelf.recommend")
KEEP_VERSIONS = 3  # saved versions kept on disk, the current one always among them


class _Visitor(NamedTuple):
    vector: np.ndarray  # scored against every item's factors
    seen: np.ndarray  # item indices the visitor engaged with


class CollaborativeModel:
    """Trained factors and the ids they belong to; see the module docstring."""

    def __init__(
        self,
        manifest: ModelManifest,
        ids: tuple[list[str], list[str]],
        factors: tuple[np.ndarray, np.ndarray],
        seen: tuple[np.ndarray, np.ndarray],
    ) -> None:
        self.manifest = manifest
        self._visitors, self._items = ids
        self._user_factors, self._item_factors = factors
        self._seen_indptr, self._seen_indices = seen
        _check_shapes(manifest, ids, factors, seen)
        self._visitor_index = {key: n for n, key in enumerate(self._visitors)}
        self._item_index = {key: n for n, key in enumerate(self._items)}
        bpr = manifest.algorithm == "bpr"
        # the item factors a visitor is solved against: without BPR's bias column
        self._fold_items = self._item_factors[:, :-1] if bpr else self._item_factors
        # YᵀY + λI, the part of every fold-in's system that does not depend on the visitor
        gram = self._fold_items.T.astype(np.float64) @ self._fold_items
        self._gram = gram + manifest.settings.l2 * np.eye(len(gram))

    # -- training -------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        interactions: Interactions,
        config: CollaborativeConfig,
    ) -> CollaborativeModel:
        """Train ``config.algorithm`` on ``interactions``; deterministic for one seed."""
        if interactions.n_interactions == 0:
            raise ValidationError("no feedback events to train on: ingest traffic first")
        started, now = time.perf_counter(), datetime.now(UTC)
        matrix = interactions.matrix
        factors = _factorize(matrix, config)
        manifest = ModelManifest(
            version=_version(interactions, config, now),
            algorithm=config.algorithm,
            trained_at=now.isoformat(timespec="seconds"),
            train_seconds=round(time.perf_counter() - started, 3),
            offsets=dict(interactions.offsets),
            visitors=len(interactions.visitors),
            items=len(interactions.items),
            interactions=interactions.n_interactions,
            settings=config,
        )
        ids = (list(interactions.visitors), list(interactions.items))
        seen = (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32))
        return cls(manifest, ids, factors, seen)

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def offsets(self) -> dict[str, int]:
        """The next offset of each events topic the model was trained to."""
        return dict(self.manifest.offsets)

    @property
    def visitors(self) -> list[str]:
        return list(self._visitors)

    @property
    def items(self) -> list[str]:
        return list(self._items)

    def most_active(self, limit: int) -> list[str]:
        """The ``limit`` trained visitors with the most distinct items, most first."""
        counts = np.diff(self._seen_indptr)
        order = np.argsort(-counts, kind="stable")[: max(0, limit)]
        return [self._visitors[i] for i in order.tolist()]

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(visitor factors, item factors), read-only views."""
        users, items = self._user_factors.view(), self._item_factors.view()
        users.flags.writeable = items.flags.writeable = False
        return users, items

    def __contains__(self, visitor: object) -> bool:
        """Whether ``visitor`` was trained on."""
        return visitor in self._visitor_index

    # -- serving --------------------------------------------------------------------

    def recommend(
        self, visitor: str, n: int, *, exclude: Collection[str] = (), exclude_seen: bool = True
    ) -> list[tuple[str, float]]:
        """The ``n`` best items for a trained visitor, best first ([] for a visitor the
        model has not seen: fold them in with ``recommend_for_items``). ``exclude_seen`` leaves out
        the items their factors were computed from."""
        found = self._visitor(visitor)
        if found is None:
            return []
        return self._top(found.vector, n, found.seen if exclude_seen else None, exclude)

    def recommend_for_items(
        self,
        items: Mapping[str, float],
        n: int,
        *,
        exclude: Collection[str] = (),
        exclude_seen: bool = True,
    ) -> list[tuple[str, float]]:
        """The ``n`` best items for a visitor known only by ``items`` (id -> weight,
        oldest first), folded in but not remembered; [] when none of them is known."""
        folded = self._fold(items)
        if folded is None:
            return []
        return self._top(folded.vector, n, folded.seen if exclude_seen else None, exclude)

    def _visitor(self, visitor: str) -> _Visitor | None:
        index = self._visitor_index.get(visitor)
        if index is None:
            return None
        start, end = self._seen_indptr[index], self._seen_indptr[index + 1]
        return _Visitor(self._user_factors[index], self._seen_indices[start:end])

    def _fold(self, items: Mapping[str, float]) -> _Visitor | None:
        settings = self.manifest.settings
        recent = list(items.items())[-settings.max_fold_in_items :]
        pairs = [(self._item_index[k], w) for k, w in recent if k in self._item_index and w > 0]
        if not pairs:
            return None
        index = np.array([i for i, _ in pairs], dtype=np.int64)
        confidence = 1.0 + settings.alpha * np.array([w for _, w in pairs], dtype=np.float64)
        y = self._fold_items[index].astype(np.float64)
        gram = self._gram + (y.T * (confidence - 1.0)) @ y
        try:
            x = np.linalg.solve(gram, y.T @ confidence)
        except np.linalg.LinAlgError:  # singular only without regularisation
            x = np.linalg.lstsq(gram, y.T @ confidence, rcond=None)[0]
        if self.manifest.algorithm == "bpr":
            x = np.append(x, 1.0)  # the visitor's bias weight, as BPR trains it
        return _Visitor(x.astype(np.float32), index)

    def _top(
        self, vector: np.ndarray, n: int, seen: np.ndarray | None, exclude: Collection[str]
    ) -> list[tuple[str, float]]:
        banned = [self._item_index[k] for k in exclude if k in self._item_index]
        drop = np.array(banned, dtype=np.int64)
        if seen is not None:
            drop = np.concatenate([drop, seen.astype(np.int64)])
        return _top_scores(self._item_factors @ vector, n, drop, self._items)

    # -- persistence ----------------------------------------------------------------

    def save(self, data_dir: Path, *, keep: int = KEEP_VERSIONS) -> Path:
        """Write this model under ``data_dir/models/cf/<version>`` and make it current;
        only the ``keep`` newest versions stay. Answers the version's directory."""
        arrays = {
            "user_factors": self._user_factors,
            "item_factors": self._item_factors,
            "seen_indptr": self._seen_indptr,
            "seen_indices": self._seen_indices,
        }
        ids = (self._visitors, self._items)
        return write_model(cf_root(data_dir), self.manifest, arrays, ids, keep=keep)

    @classmethod
    def load(cls, directory: Path) -> CollaborativeModel:
        """A saved version; ``ConfigError`` if it is missing or damaged."""
        files = read_model(directory)
        arrays = files.arrays
        return cls(
            files.manifest,
            (files.visitors, files.items),
            (arrays["user_factors"], arrays["item_factors"]),
            (arrays["seen_indptr"], arrays["seen_indices"]),
        )


def load_current(data_dir: Path) -> CollaborativeModel | None:
    """The current saved model under ``data_dir``, or None when none was saved yet."""
    directory = current_dir(data_dir)
    if directory is None:
        return None
    return CollaborativeModel.load(directory)


def train_from_logs(
    config: Config,
    events_log: EventLog,
    batch_log: EventLog | None = None,
) -> CollaborativeModel:
    """Read the logs to their ends (bots left out) and fit ``config.recommend.cf``.

    Blocking and CPU-bound (one core): the service runs it in a background thread
    and swaps the model in when it returns.
    """
    interactions = read_interactions(config, events_log, batch_log)
    model = CollaborativeModel.fit(interactions, config.recommend.cf)
    _logger.info(
        "recommend.cf_trained", version=model.version, seconds=model.manifest.train_seconds,
        visitors=model.manifest.visitors, items=model.manifest.items,
        pairs=model.manifest.interactions, **msgspec.structs.asdict(interactions.stats),
    )  # fmt: skip
    return model


def _factorize(matrix: object, config: CollaborativeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(visitor factors, item factors) from ``implicit``, one thread, seeded."""
    # OpenBLAS's own threads slow implicit's many small solves down and make it warn;
    # the limit is process-wide while it lasts, which also keeps training off the
    # cores a serving process answers requests on.
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        if config.algorithm == "als":
            model = AlternatingLeastSquares(
                factors=config.factors, regularization=config.l2, alpha=1.0,
                iterations=config.iterations, num_threads=1, random_state=config.seed,
            )  # fmt: skip
            confidence = matrix.copy()  # type: ignore[attr-defined]
            confidence.data = 1.0 + config.alpha * confidence.data
            model.fit(confidence, show_progress=False)
        else:
            model = BayesianPersonalizedRanking(
                factors=config.factors, learning_rate=config.learning_rate,
                regularization=config.l2, iterations=config.iterations,
                num_threads=1, random_state=config.seed,
            )  # fmt: skip
            model.fit(matrix, show_progress=False)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    return users, items


def _version(interactions: Interactions, config: CollaborativeConfig, now: datetime) -> str:
    """``<algorithm>-<UTC time>-<hash of the data and the settings>``."""
    digest = hashlib.blake2b(digest_size=4)
    matrix = interactions.matrix
    for part in (matrix.indptr, matrix.indices, matrix.data):
        digest.update(np.ascontiguousarray(part).tobytes())
    for ids in (interactions.visitors, interactions.items):
        digest.update("\n".join(ids).encode())
    digest.update(msgspec.json.encode(config))
    return f"{config.algorithm}-{now:%Y%m%dT%H%M%SZ}-{digest.hexdigest()}"


def _top_scores(
    scores: np.ndarray, n: int, drop: np.ndarray, ids: list[str]
) -> list[tuple[str, float]]:
    """The ``n`` highest scores but the dropped indices, best first, ties by index."""
    scores = scores.astype(np.float32, copy=True)
    scores[drop] = -np.inf
    k = min(n, len(scores))
    if k < 1:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((top, -scores[top]))]
    return [(ids[i], float(scores[i])) for i in top.tolist() if scores[i] > -np.inf]


def _check_shapes(
    manifest: ModelManifest,
    ids: tuple[list[str], list[str]],
    factors: tuple[np.ndarray, np.ndarray],
    seen: tuple[np.ndarray, np.ndarray],
) -> None:
    """Arrays that do not fit together (a damaged save) fail here, not as an IndexError
    in the middle of a request."""
    (visitors, items), (users, item_factors), (indptr, indices) = ids, factors, seen
    width = manifest.settings.factors + (1 if manifest.algorithm == "bpr" else 0)
    problems = [
        f"{name} has shape {array.shape}, expected {shape}"
        for name, array, shape in (
            ("user factors", users, (len(visitors), width)),
            ("item factors", item_factors, (len(items), width)),
            ("seen index pointer", indptr, (len(visitors) + 1,)),
        )
        if array.shape != shape
    ]
    out_of_range = indices.size > 0 and int(indices.max()) >= len(items)
    if not problems and (indptr[-1] != len(indices) or out_of_range):
        problems.append("the seen items do not index the items")
    if (manifest.visitors, manifest.items) != (len(visitors), len(items)):
        problems.append("the manifest's counts do not match the ids")
    if problems:
        raise ConfigError(f"collaborative model {manifest.version}: {'; '.join(problems)}")
