"""The baselines every hotshelf recommender is measured against, in the same run.

- ``popularity``: the items with the most training interactions, for everyone.
- ``als``: implicit's ``AlternatingLeastSquares`` with its default hyperparameters.
  A visitor seen in training gets their trained factors. A case with session context
  is folded in (``recalculate_user=True``: the visitor's training row plus the context)
  because that is implicit's own way to serve a user the model has not trained on;
  without it ALS would have nothing for any anonymous session. A visitor with neither
  history nor context gets an empty list: ALS has no factors for them.
- ``item-knn``: implicit's ``CosineRecommender`` (defaults, K=20) on the same matrix,
  queried with the case's history and context items.

All three train on one visitors x items matrix of summed event weights, weighted as
the product's collaborative filtering weighs events by default (``recommend.cf``), so
the router and the baselines see the same evidence.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable

import numpy as np
import threadpoolctl
from implicit.als import AlternatingLeastSquares
from implicit.nearest_neighbours import CosineRecommender
from implicit.utils import ParameterWarning
from numpy.typing import NDArray
from scipy.sparse import csr_matrix

from hotshelf.config import CollaborativeConfig
from hotshelf.errors import ConflictError, ValidationError
from hotshelf.evaluation._cases import Case
from hotshelf.evaluation._dataset import Interaction
from hotshelf.evaluation._recommender import OfflineRecommender
from hotshelf.evaluation._split import TrainingData

__all__ = ["ImplicitALS", "ItemKNN", "Popularity"]

_WEIGHTS = CollaborativeConfig().event_weights


class _Matrix:
    """Training interactions as a visitors x items CSR matrix of summed event weights."""

    def __init__(self, interactions: Iterable[Interaction]) -> None:
        self.visitors: dict[str, int] = {}
        self.index: dict[str, int] = {}
        self.items: list[str] = []
        rows, cols, weights = [], [], []
        for interaction in interactions:
            rows.append(self.visitors.setdefault(interaction.visitor, len(self.visitors)))
            cols.append(self._item(interaction.item))
            weights.append(_WEIGHTS[interaction.kind])
        if not rows:
            raise ValidationError("a recommender needs at least one training interaction")
        shape = (len(self.visitors), len(self.items))
        # duplicates (an item viewed twice) are summed when the COO entries become CSR
        self.csr = csr_matrix((np.asarray(weights, np.float32), (rows, cols)), shape=shape)

    def _item(self, item: str) -> int:
        column = self.index.setdefault(item, len(self.items))
        if column == len(self.items):
            self.items.append(item)
        return column

    def query(self, case: Case) -> csr_matrix:
        """A one-row matrix: the visitor's training row plus the case's context events."""
        row = np.zeros(len(self.items), np.float32)
        visitor = self.visitors.get(case.visitor)
        if visitor is not None:
            own = self.csr[visitor]
            row[own.indices] = own.data
        for interaction in case.context:
            column = self.index.get(interaction.item)
            if column is not None:
                row[column] += _WEIGHTS[interaction.kind]
        return csr_matrix(row[None, :])

    def excluded(self, case: Case) -> NDArray[np.int32] | None:
        """Columns of the case's excluded items that training knows (None if none)."""
        columns = [self.index[i] for i in case.exclude if i in self.index]
        return np.asarray(columns, np.int32) if columns else None

    def names(self, columns: NDArray[np.integer], k: int) -> list[str]:
        return [self.items[c] for c in columns[:k] if c >= 0]


class Popularity(OfflineRecommender):
    """The most interacted-with training items, the same list for everyone."""

    name = "popularity"

    def __init__(self) -> None:
        self._ranked: list[str] | None = None

    def fit(self, train: TrainingData) -> None:
        counts = Counter(i.item for i in train.interactions)
        # ties by item id, so that two runs list the same items
        self._ranked = sorted(counts, key=lambda item: (-counts[item], item))

    def recommend(self, case: Case, k: int) -> list[str]:
        if self._ranked is None:
            raise ConflictError("fit the popularity baseline before asking it for recommendations")
        out: list[str] = []
        for item in self._ranked:
            if len(out) == k:
                break
            if item not in case.exclude:
                out.append(item)
        return out


class ImplicitALS(OfflineRecommender):
    """implicit's ALS with default hyperparameters (seeded, on the CPU)."""

    name = "als"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._matrix: _Matrix | None = None
        self._model: AlternatingLeastSquares | None = None

    def fit(self, train: TrainingData) -> None:
        self._matrix = _Matrix(train.interactions)
        # implicit's own advice: BLAS threads fight its solver threads (several times
        # slower); it checks when the model is made, so both steps run under the limit
        with threadpoolctl.threadpool_limits(1, "blas"):
            # use_gpu=False keeps results the same on machines with and without CUDA
            model = AlternatingLeastSquares(random_state=self.seed, use_gpu=False)
            model.fit(self._matrix.csr, show_progress=False)
        # one visitor at a time is too little work to share: with a thread pool each
        # answer waits on thread wake-ups (5x slower on two busy cores); same results
        model.num_threads = 1
        self._model = model

    def recommend(self, case: Case, k: int) -> list[str]:
        if self._matrix is None or self._model is None:
            raise ConflictError("fit the ALS baseline before asking it for recommendations")
        matrix, model = self._matrix, self._model
        visitor = matrix.visitors.get(case.visitor)
        if case.context:
            query, userid, recalculate = matrix.query(case), 0, True
            if query.nnz == 0:
                return []
        elif visitor is not None:
            query, userid, recalculate = matrix.csr[visitor], visitor, False
        else:
            return []
        excluded = matrix.excluded(case)
        n = min(k, len(matrix.items) - (0 if excluded is None else len(excluded)))
        if n < 1:
            return []
        ids, _ = model.recommend(userid, query, N=n, filter_already_liked_items=False,
                                 filter_items=excluded, recalculate_user=recalculate)  # fmt: skip
        return matrix.names(ids, k)


class ItemKNN(OfflineRecommender):
    """implicit's cosine item-kNN (defaults), queried with history and context items."""

    name = "item-knn"

    def __init__(self) -> None:
        self._matrix: _Matrix | None = None
        self._model: CosineRecommender | None = None

    def fit(self, train: TrainingData) -> None:
        self._matrix = _Matrix(train.interactions)
        model = CosineRecommender()
        with warnings.catch_warnings():
            # CosineRecommender normalises into a COO matrix and then warns about it itself
            warnings.filterwarnings("ignore", "Method expects CSR input", ParameterWarning)
            model.fit(self._matrix.csr, show_progress=False)
        self._model = model

    def recommend(self, case: Case, k: int) -> list[str]:
        if self._matrix is None or self._model is None:
            raise ConflictError("fit the item-kNN baseline before asking it for recommendations")
        query = self._matrix.query(case)
        if query.nnz == 0:
            return []
        ids, _ = self._model.recommend(0, query, N=k, filter_already_liked_items=False,
                                       filter_items=self._matrix.excluded(case))  # fmt: skip
        # with filter_items, implicit can hand back up to k + len(filter_items) items
        return self._matrix.names(ids, k)
