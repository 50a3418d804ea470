"""Blending ranked candidate lists: weighted reciprocal-rank fusion.

Each route (and, inside "browsing now", each seed item and each signal) ranks its own
candidates on its own scale: a collaborative score, a cosine, a co-engagement count,
a trend z-score. Those scales do not compare, ranks do. An item at rank r (from 1) of
a list with weight w earns ``w / (FUSION_OFFSET + r)``; its blended score is the sum
over the lists that have it. Within a route it is credited to the list that gave it
most; across routes, to the route that ranks it best (that route and its reason are
what the shopper sees); the earlier list on a tie. Ties break on the item id, so
the same inputs always give the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import msgspec

from hotshelf.recommend._context import Route

__all__ = ["FUSION_OFFSET", "Blended", "Candidate", "blend", "fuse"]

L = TypeVar("L")
SPECIFIC_FIRST = (Route.BROWSING, Route.PERSONAL, Route.GENERIC)

# The usual reciprocal-rank-fusion constant is 60, tuned for long web result lists;
# recommendation lists are short and their heads matter most, so a smaller one
# keeps rank 1 clearly ahead of rank 20.
FUSION_OFFSET = 10.0


class Candidate(msgspec.Struct, frozen=True):
    """An item a source proposes: ``kind`` names the signal ("trending", "similar" ...),
    ``because`` the item that led to it, if any."""

    item_id: str
    score: float
    kind: str
    because: str | None = None


class Blended(msgspec.Struct):
    """A candidate after blending: its fused score and the route that gave it most."""

    item_id: str
    score: float
    route: Route
    kind: str
    because: str | None = None


def _fused(
    lists: Iterable[tuple[float, L, Sequence[Candidate]]], *, by_rank: bool = False
) -> list[tuple[str, float, L, Candidate]]:
    """(item, fused score, credited label, its candidate), best first: credited is the
    list of the largest share or, ``by_rank``, of the best rank (weights aside); the
    earlier list on a tie."""
    shares: dict[str, list[float]] = {}
    best: dict[str, tuple[float, L, Candidate]] = {}
    for weight, label, candidates in lists:
        if weight <= 0:
            continue
        seen: set[str] = set()
        for rank, candidate in enumerate(candidates, start=1):
            item = candidate.item_id
            if item in seen:  # a list names an item once; a repeat earns nothing
                continue
            seen.add(item)
            share = weight / (FUSION_OFFSET + rank)
            shares.setdefault(item, []).append(share)
            merit = -rank if by_rank else share
            if item not in best or merit > best[item][0]:
                best[item] = (merit, label, candidate)
    # fsum: equal shares give equal sums whatever order they were added in, so ties
    # are real ties and break on the id
    scores = {item: math.fsum(each) for item, each in shares.items()}
    order = sorted(scores, key=lambda item: (-scores[item], item))
    return [(item, scores[item], best[item][1], best[item][2]) for item in order]


def fuse(lists: Iterable[tuple[float, Sequence[Candidate]]]) -> list[Candidate]:
    """One ranked list from several weighted ones; kind and ``because`` come from the
    list that gave each item its largest share."""
    fused = _fused((weight, None, candidates) for weight, candidates in lists)
    return [Candidate(item, score, c.kind, c.because) for item, score, _, c in fused]


def blend(
    routes: Mapping[Route, Sequence[Candidate]], weights: Mapping[str, float]
) -> list[Blended]:
    """The routes' lists fused by ``weights`` (keyed by route name), best first. An item
    is credited to the route that ranks it best, the more specific on a tie (browsing,
    personal, generic): the weights say how much a route counts, not which reason is
    true, and "because you viewed X" says more than "popular" of the same item."""
    lists = (
        (weights.get(route.value, 0.0), route, routes[route])
        for route in SPECIFIC_FIRST
        if route in routes
    )
    fused = _fused(lists, by_rank=True)
    return [Blended(item, score, route, c.kind, c.because) for item, score, route, c in fused]
