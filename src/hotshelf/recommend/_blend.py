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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from hotshelf.recommend._context import Route

__all__ = ["FUSION_OFFSET", "Blended", "Candidate", "blend", "candidates", "fuse"]

L = TypeVar("L")
SPECIFIC_FIRST = (Route.BROWSING, Route.PERSONAL, Route.GENERIC)

# The usual reciprocal-rank-fusion constant is 60, tuned for long web result lists;
# recommendation lists are short and their heads matter most, so a smaller one
# keeps rank 1 clearly ahead of rank 20.
FUSION_OFFSET = 10.0
# Shares are summed as whole multiples of 2^-52: exact sums, whatever the order.
SHARE_UNITS = float(1 << 52)


class Candidate(msgspec.Struct, frozen=True):
    """An item a source proposes: ``kind`` names the signal ("trending", "similar" ...),
    ``because`` the item that led to it, if any."""

    item_id: str
    score: float
    kind: str
    because: str | None = None


def candidates(scored: Iterable[tuple[str, float]], kind: str) -> list[Candidate]:
    """(item, score) pairs, best first, as candidates of one ``kind``."""
    return [Candidate(item, score, kind) for item, score in scored]


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
    earlier list on a tie. A list names an item once: a repeat earns nothing."""
    # per item: [total in SHARE_UNITS, the last list that had it, merit, label, candidate]
    found: dict[str, list[Any]] = {}
    get = found.get
    for number, (weight, label, candidates) in enumerate(lists):
        if weight <= 0:
            continue
        units = weight * SHARE_UNITS
        for rank, candidate in enumerate(candidates, start=1):
            item = candidate.item_id
            # integer shares: sums are exact, so equal shares tie whatever the order
            share = round(units / (FUSION_OFFSET + rank))
            merit = -rank if by_rank else share
            entry = get(item)
            if entry is None:
                found[item] = [share, number, merit, label, candidate]
            elif entry[1] != number:
                entry[0] += share
                entry[1] = number
                if merit > entry[2]:
                    entry[2:] = merit, label, candidate
    order = sorted(found.items(), key=lambda pair: (-pair[1][0], pair[0]))
    return [(item, e[0] / SHARE_UNITS, e[3], e[4]) for item, e in order]


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
