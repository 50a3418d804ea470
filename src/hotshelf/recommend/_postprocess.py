"""After blending: what may be shown (availability, filters, exclusions) and in what order
(diversity).

``Eligibility`` holds one request's rules: never an item the shopper just bought or is
looking at, never one out of stock or discontinued, and every request filter
(categories in or out, price range). ``diversify`` then re-ranks the survivors by
maximal marginal relevance: each next item maximises
``(1 - diversity) * relevance - diversity * max similarity to the items already
chosen``, with similarity the cosine of the items' text embeddings where they have
them, and "same top-level category" where they don't.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from hotshelf.errors import FieldProblem, ValidationError
from hotshelf.events import Availability, Item
from hotshelf.recommend._blend import Blended
from hotshelf.recommend._context import Filters

__all__ = ["Eligibility", "check_filters", "diversify", "shortlist_size", "top_category"]

_SHOWABLE = frozenset({Availability.IN_STOCK, Availability.PREORDER})


def shortlist_size(k: int) -> int:
    """How many eligible candidates diversity chooses ``k`` from."""
    return max(2 * k, k + 10)


def top_category(item: Item) -> str | None:
    """The most general level of the item's category path: diversity's fallback group."""
    return item.category[0] if item.category else None


def check_filters(filters: Filters | None, max_categories: int) -> None:
    """``ValidationError`` naming the field of a filter that can never be satisfied."""
    if filters is None:
        return
    problems: list[FieldProblem] = []
    for name in ("include_categories", "exclude_categories"):
        given = getattr(filters, name)
        if given is not None and len(given) > max_categories:
            problems.append(FieldProblem(f"$.filters.{name}", f"more than {max_categories}"))
    low, high = filters.min_price, filters.max_price
    if low is not None and high is not None and low > high:
        problems.append(FieldProblem("$.filters.min_price", "greater than filters.max_price"))
    if problems:
        raise ValidationError("invalid filters", problems)


def _folded(names: list[str] | None) -> frozenset[str] | None:
    """Category names compared without case; an empty list is no filter at all."""
    return frozenset(name.casefold() for name in names) if names else None


class Eligibility:
    """Whether one request may show an item: in the catalog, available, not excluded,
    and inside every filter (a category filter matches any level of the item's path)."""

    def __init__(self, filters: Filters | None, excluded: Collection[str]) -> None:
        filters = filters or Filters()
        self.excluded = excluded
        self._include = _folded(filters.include_categories)
        self._exclude = _folded(filters.exclude_categories)
        self._low = filters.min_price
        self._high = filters.max_price

    def allows(self, item: Item | None) -> bool:
        if item is None or item.item_id in self.excluded or item.availability not in _SHOWABLE:
            return False
        if self._include is not None or self._exclude is not None:
            path = {level.casefold() for level in item.category}
            if self._include is not None and not path & self._include:
                return False
            if self._exclude is not None and path & self._exclude:
                return False
        if self._low is not None or self._high is not None:
            price = item.price
            if price is None:
                return False
            if (self._low is not None and price < self._low) or (
                self._high is not None and price > self._high
            ):
                return False
        return True


def _similarities(vectors: np.ndarray | None, groups: Sequence[str | None]) -> np.ndarray:
    """Pairwise similarity: cosines where both items have a vector, else same group."""
    n = len(groups)
    same = np.array([[a is not None and a == b for b in groups] for a in groups], dtype=np.float32)
    if vectors is None:
        return same
    has = np.linalg.norm(vectors, axis=1) > 0
    cosine = np.clip(vectors @ vectors.T, 0.0, 1.0)
    both = has[:, None] & has[None, :]
    out: np.ndarray = np.where(both, cosine, same).astype(np.float32)
    return out.reshape(n, n)


def diversify(
    candidates: Sequence[Blended],
    k: int,
    diversity: float,
    *,
    vectors: np.ndarray | None = None,
    groups: Sequence[str | None] | None = None,
) -> list[Blended]:
    """The best ``k`` of ``candidates`` (best first) re-ranked by maximal marginal
    relevance; ``vectors`` are unit rows aligned with them (zero rows: no vector),
    ``groups`` their top-level categories."""
    if diversity <= 0 or len(candidates) <= 1:
        return list(candidates[:k])
    top = max(c.score for c in candidates) or 1.0
    relevance = np.array([c.score / top for c in candidates], dtype=np.float32)
    similar = _similarities(vectors, groups if groups is not None else [None] * len(candidates))
    chosen: list[int] = []
    closest = np.zeros(len(candidates), dtype=np.float32)  # max similarity to the chosen
    free = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        gain = (1.0 - diversity) * relevance - diversity * closest
        gain[~free] = -np.inf
        pick = int(np.argmax(gain))  # ties: the earlier, i.e. more relevant, candidate
        chosen.append(pick)
        free[pick] = False
        np.maximum(closest, similar[pick], out=closest)
    return [candidates[i] for i in chosen]
