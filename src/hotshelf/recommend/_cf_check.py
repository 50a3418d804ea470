"""Does collaborative filtering beat popularity on this store's own traffic?

Leave-last-out: every visitor with at least ``min_items`` distinct items has the item
of their last event held out (all their events on it), a model is trained on the
rest with the same settings, and recall@k is the share of those visitors whose
held-out item is among their k recommendations. The baseline ranks items by how
many visitors engaged with them in the training split. Both leave out the items a
visitor already engaged with in training, so neither wins by repeating history.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from hotshelf.recommend._collaborative import CollaborativeModel

if TYPE_CHECKING:
    from hotshelf.config import CollaborativeConfig
    from hotshelf.recommend._interactions import Interactions

__all__ = ["HeldOutReport", "held_out_check"]


class HeldOutReport(msgspec.Struct, frozen=True, kw_only=True):
    """Recall@k of the model and of the popularity baseline on held-out last items."""

    k: int
    visitors: int  # visitors evaluated (with a held-out item)
    recall: float
    popularity_recall: float
    seconds: float  # training the split model included


def held_out_check(
    interactions: Interactions,
    config: CollaborativeConfig,
    *,
    k: int = 10,
    min_items: int = 3,
    max_visitors: int = 10_000,
) -> HeldOutReport | None:
    """Leave-last-out recall@k of ``config`` vs popularity; None when no visitor has
    ``min_items`` items. At most ``max_visitors`` (a seeded sample) are scored."""
    started = time.perf_counter()
    split, truth = interactions.hold_out_last(min_items)
    if not truth:
        return None
    visitors = sorted(truth)
    if len(visitors) > max_visitors:
        visitors = sorted(random.Random(config.seed).sample(visitors, max_visitors))
    model = CollaborativeModel.fit(split, config)
    hits = sum(truth[v] in {item for item, _ in model.recommend(v, k)} for v in visitors)
    popular = _popularity_hits(split, truth, visitors, k)
    return HeldOutReport(
        k=k,
        visitors=len(visitors),
        recall=hits / len(visitors),
        popularity_recall=popular / len(visitors),
        seconds=time.perf_counter() - started,
    )


def _popularity_hits(
    split: Interactions, truth: dict[str, str], visitors: list[str], k: int
) -> int:
    """How many visitors' held-out item is among the k most popular they have not seen."""
    matrix = split.matrix
    engaged = np.bincount(matrix.indices, minlength=len(split.items))
    ranked = np.lexsort((np.arange(len(engaged)), -engaged)).tolist()
    hits = 0
    for visitor in visitors:
        row = split.visitor_index[visitor]
        seen = set(matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]].tolist())
        top: list[int] = []
        for item in ranked:
            if item not in seen:
                top.append(item)
                if len(top) == k:
                    break
        hits += split.item_index[truth[visitor]] in top
    return hits
