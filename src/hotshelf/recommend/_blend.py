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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

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
_SHARE_TABLES: dict[float, list[int]] = {}
_MAX_SHARE_TABLES = 1024


class Candidate(msgspec.Struct, frozen=True, gc=False):
    """An item a source proposes: ``kind`` names the signal ("trending", "similar" ...),
    ``because`` the item that led to it, if any.

    Not tracked by the cyclic GC (``gc=False``: strings and a float can never be part
    of a cycle), so a tuple of candidates is not either, once collected: kept lists
    (``ListCache``) cost a full collection nothing."""

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


def _shares(weight: float, n: int) -> list[int]:
    """The shares of ranks 1, 2, ... (at least ``n``) in a list of ``weight``, kept per
    weight: the same few weights (the routes', the seeds' decays) come back on every
    request, and one division and rounding per candidate was a tenth of the fusion."""
    table = _SHARE_TABLES.get(weight)
    if table is None or len(table) < n:
        units = weight * SHARE_UNITS
        table = [round(units / (FUSION_OFFSET + rank)) for rank in range(1, max(n, 64) + 1)]
        if len(_SHARE_TABLES) >= _MAX_SHARE_TABLES:  # weights from many experiment arms
            _SHARE_TABLES.clear()
        _SHARE_TABLES[weight] = table
    return table


class _Fusion(NamedTuple):
    """A fusion's outcome, for ``fuse`` and ``blend`` to make their answers from in one
    pass (a tuple per item in between cost a tenth of a fusion)."""

    order: list[str]  # best first
    totals: dict[str, int]  # in SHARE_UNITS: integer sums are exact in any order
    credit: dict[str, list[Any]]  # per item: [last list that had it, merit, label, candidate]


def _fused(
    lists: Iterable[tuple[float, L, Sequence[Candidate]]],
    *,
    by_rank: bool = False,
    limit: int | None = None,
) -> _Fusion:
    """The best ``limit`` items (default all), best first, with their totals and what
    they are credited to: the list of the largest share or, ``by_rank``, of the best
    rank (weights aside); the earlier list on a tie. A list names an item once: a
    repeat earns nothing."""
    totals: dict[str, int] = {}
    credit: dict[str, list[Any]] = {}
    total_of = totals.get
    for number, (weight, label, candidates) in enumerate(lists):
        if weight <= 0 or not candidates:
            continue
        shares = _shares(weight, len(candidates))
        for rank, candidate in enumerate(candidates):
            item = candidate.item_id
            share = shares[rank]
            total = total_of(item)
            if total is None:
                totals[item] = share
                credit[item] = [number, -rank if by_rank else share, label, candidate]
                continue
            entry = credit[item]
            if entry[0] != number:
                totals[item] = total + share
                entry[0] = number
                merit = -rank if by_rank else share
                if merit > entry[1]:
                    entry[1:] = merit, label, candidate
    return _Fusion(_ranked(totals, limit), totals, credit)


def _ranked(totals: dict[str, int], limit: int | None) -> list[str]:
    """The best ``limit`` items (default all): highest total first, ties by item id.

    Two stable sorts, both keyed in C: by id, then by total. Sorting ids is most of the
    cost (string compares, ~25 µs for 160 items), so with a ``limit`` the order by total
    comes first, and only the items that can make the cut are sorted by id: those above
    the ``limit``-th total and all that tie with it."""
    total_of = totals.__getitem__
    if limit is not None and limit <= 0:
        return []
    if limit is None or limit >= len(totals):
        order = sorted(totals)
        order.sort(key=total_of, reverse=True)
        return order
    order = sorted(totals, key=total_of, reverse=True)
    cut, end = total_of(order[limit - 1]), limit
    while end < len(order) and total_of(order[end]) == cut:
        end += 1
    del order[end:]
    order.sort()
    order.sort(key=total_of, reverse=True)
    del order[limit:]
    return order


def fuse(
    lists: Iterable[tuple[float, Sequence[Candidate]]], limit: int | None = None
) -> list[Candidate]:
    """One ranked list (its best ``limit``, default all) from several weighted ones; kind
    and ``because`` come from the list that gave each item its largest share."""
    order, totals, credit = _fused(
        ((weight, None, candidates) for weight, candidates in lists), limit=limit
    )
    return [
        Candidate(item, totals[item] / SHARE_UNITS, c.kind, c.because)
        for item in order
        for c in (credit[item][3],)  # an assignment, compiled as one since Python 3.9
    ]


def blend(
    routes: Mapping[Route, Sequence[Candidate]], weights: Mapping[str, float]
) -> Iterator[Blended]:
    """The routes' lists fused by ``weights`` (keyed by route name), best first. An item
    is credited to the route that ranks it best, the more specific on a tie (browsing,
    personal, generic): the weights say how much a route counts, not which reason is
    true, and "because you viewed X" says more than "popular" of the same item.

    The ranking is made at once; each ``Blended`` only as it is taken: a request takes
    the first few eligible of 100-150, and making them all was a tenth of the blend."""
    lists = [
        (weight, route, routes[route])
        for route in SPECIFIC_FIRST
        if route in routes and routes[route] and (weight := weights.get(route.value, 0.0)) > 0
    ]
    if len(lists) == 1:  # one route (a new visitor's generic list): its order, if distinct
        weight, route, candidates = lists[0]
        n = len(candidates)
        shares = _shares(weight, n)
        if (n < 2 or shares[n - 2] > shares[n - 1]) and n == len(
            {c.item_id for c in candidates}
        ):  # strictly falling shares (the steps narrow with rank): no ties to break on ids
            return (
                Blended(c.item_id, share / SHARE_UNITS, route, c.kind, c.because)
                for c, share in zip(candidates, shares, strict=False)  # shares may run on
            )
    order, totals, credit = _fused(lists, by_rank=True)
    return (
        Blended(item, totals[item] / SHARE_UNITS, route, c.kind, c.because)
        for item in order
        for _, _, route, c in (credit[item],)
    )
