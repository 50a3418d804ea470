"""Ranking metrics with binary relevance: Recall@k, NDCG@k and catalog coverage.

Recall@k divides the hits by ``min(|truth|, k)``, not ``|truth|``: a returning movie
fan may rate fifty films after the split, and no list of ten can hold them all, so
the plain ratio would cap a perfect ranking at 0.2 and shrink differences between
shoppers with long and short futures. With the smaller divisor a perfect list scores 1
for everyone. An item listed twice counts once.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

import msgspec

from hotshelf.errors import ValidationError

__all__ = ["Scores", "catalog_coverage", "ndcg_at_k", "recall_at_k", "score_lists"]


class Scores(msgspec.Struct, frozen=True, kw_only=True):
    """Mean Recall@k and NDCG@k over ``cases`` lists, and the catalog share they cover.

    With no cases there is nothing to average: the three scores are ``None``.
    """

    cases: int
    recall: float | None
    ndcg: float | None
    coverage: float | None


def _hits(ranked: Sequence[str], truth: Collection[str], k: int) -> list[bool]:
    """Whether each distinct item among the first ``k`` of ``ranked`` is in ``truth``."""
    if k < 1:
        raise ValidationError(f"k must be at least 1, not {k}")
    if not truth:
        raise ValidationError("a ranking can only be scored against a non-empty truth")
    seen: set[str] = set()
    hits = []
    for item in ranked[:k]:
        if item not in seen:
            seen.add(item)
            hits.append(item in truth)
    return hits


def recall_at_k(ranked: Sequence[str], truth: Collection[str], k: int) -> float:
    """Share of the truth (at most ``k`` of it) found among the first ``k`` items."""
    return sum(_hits(ranked, truth, k)) / min(len(truth), k)


def ndcg_at_k(ranked: Sequence[str], truth: Collection[str], k: int) -> float:
    """Discounted hits among the first ``k`` items over the best possible for this truth."""
    gains = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(_hits(ranked, truth, k)) if hit)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(truth), k)))
    return gains / ideal


def catalog_coverage(lists: Iterable[Sequence[str]], catalog: Collection[str]) -> float:
    """Share of ``catalog`` recommended at least once; items outside it do not count."""
    if not catalog:
        raise ValidationError("coverage needs a non-empty catalog")
    shown = {item for ranked in lists for item in ranked}
    return sum(1 for item in shown if item in catalog) / len(catalog)


def score_lists(
    lists: Sequence[Sequence[str]],
    truths: Sequence[Collection[str]],
    catalog: Collection[str],
    k: int,
) -> Scores:
    """Mean Recall@k and NDCG@k of each list against its truth, and their coverage."""
    if len(lists) != len(truths):
        raise ValidationError(f"{len(lists)} lists but {len(truths)} truths")
    if not lists:
        return Scores(cases=0, recall=None, ndcg=None, coverage=None)
    pairs = list(zip(lists, truths, strict=True))
    return Scores(
        cases=len(lists),
        recall=sum(recall_at_k(r, t, k) for r, t in pairs) / len(pairs),
        ndcg=sum(ndcg_at_k(r, t, k) for r, t in pairs) / len(pairs),
        coverage=catalog_coverage((r[:k] for r in lists), catalog),
    )
