"""Candidate sources over the stream state's queries and the embeddings.

* ``generic_candidates``: trending and popular items for the visitor's location and
  device, fused; backed by wider segments (the location alone, the device alone,
  everything) while the segment has too few.
* ``co_viewed``: items viewed in the same sessions as the seeds (stream
  co-engagement), seeds weighted by recency; each credited to the seed that led to it.
* ``content_similar``: items nearest each seed's text embedding (one store read and one
  index search per seed, kept per item in a ``NeighbourCache`` until the embeddings
  change), fused with the seeds weighted by recency.

``Recommender`` fuses co-viewed and content-similar into "browsing now"; personal
candidates come from ``CollaborativeModel``. The state may be live (``StateView``),
remote (``RemoteState``) or rebuilt offline (``evaluation._router``): any
``StateQueries``. Every function here reads; none keeps state between requests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hotshelf.recommend._blend import Candidate, fuse

if TYPE_CHECKING:
    from hotshelf.embeddings import EmbeddingService
    from hotshelf.stream import ItemScore, StateQueries

__all__ = [
    "NeighbourCache",
    "co_viewed",
    "content_similar",
    "generic_candidates",
    "segments_for",
]

# Recency weights of the browsing seeds: the current item 1, the one before 1/2 ...
SEED_DECAY = 0.5


def segments_for(location: str | None, device: str | None) -> list[tuple[str | None, str | None]]:
    """The segment and its roll-ups, narrowest first, without repeats."""
    wider = [(location, device), (location, None), (None, device), (None, None)]
    return list(dict.fromkeys(wider))


def generic_candidates(
    reader: StateQueries,
    location: str | None,
    device: str | None,
    n: int,
    trending_weight: float = 1.0,
) -> tuple[list[Candidate], tuple[str | None, str | None]]:
    """Trending and popular items for the segment, fused (trending weighed against
    popular's 1), and the segment they came from (the narrowest with at least ``n``
    items, else the widest)."""
    found: list[Candidate] = []
    segment: tuple[str | None, str | None] = (None, None)
    for segment in segments_for(location, device):
        trending = reader.trending(segment[0], segment[1], None, None, n)
        popular = reader.popular(segment[0], segment[1], None, None, n)
        found = fuse(
            [
                (trending_weight, [Candidate(s.item_id, s.score, "trending") for s in trending]),
                (1.0, [Candidate(s.item_id, s.score, "popular") for s in popular]),
            ]
        )
        if len(found) >= n:
            break
    return found[:n], segment


def co_viewed(reader: StateQueries, seeds: Sequence[str], n: int) -> list[Candidate]:
    """Items viewed in the same sessions as the seeds, seeds weighted by recency (the
    r-th most recent seed brings n / r items: older seeds weigh less, and rank less)."""
    lists = [
        (SEED_DECAY**rank, [Candidate(s.item_id, s.score, "co-viewed", seed)
                            for s in reader.related(seed, "viewed", max(1, n // (rank + 1)))])
        for rank, seed in enumerate(seeds)
    ]  # fmt: skip
    return fuse(lists)[:n]


def content_similar(
    embeddings: EmbeddingService,
    seeds: Sequence[str],
    n: int,
    exclude: set[str],
    neighbours: NeighbourCache | None = None,
) -> list[Candidate]:
    """Items nearest each seed's text embedding, fused with the seeds weighted by
    recency (the r-th most recent brings n / r), each credited to the seed that led to
    it. A seed without a vector yet brings nothing; ``neighbours`` keeps each seed's
    list between requests."""
    lists = []
    for rank, seed in enumerate(seeds):
        found = neighbours.get(embeddings, seed, n) if neighbours else _nearest(embeddings, seed, n)
        kept = [Candidate(s.item_id, s.score, "similar", seed)
                for s in found[: max(1, n // (rank + 1))] if s.item_id not in exclude]  # fmt: skip
        lists.append((SEED_DECAY**rank, kept))
    return fuse(lists)[:n]


def _nearest(embeddings: EmbeddingService, item_id: str, n: int) -> list[ItemScore]:
    """The ``n`` items nearest ``item_id`` ([] while it has no vector)."""
    fetched = embeddings.lookup([item_id])
    if not fetched.found[0]:
        return []
    return embeddings.nearest(np.asarray(fetched.vectors)[0], n, exclude={item_id})


class NeighbourCache:
    """Each item's nearest neighbours, kept until the embeddings change (their service's
    ``generation``) or ``capacity`` newer items push them out; thread-safe."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[str, tuple[int, int, list[ItemScore]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, embeddings: EmbeddingService, item_id: str, n: int) -> list[ItemScore]:
        generation = embeddings.generation
        with self._lock:
            kept = self._lists.get(item_id)
            if kept is not None and kept[0] == generation and kept[1] >= n:
                self._lists.move_to_end(item_id)
                return kept[2][:n]
        found = _nearest(embeddings, item_id, n)
        if found:  # an item with no vector yet is asked again next time
            with self._lock:
                self._lists[item_id] = (generation, n, found)
                self._lists.move_to_end(item_id)
                while len(self._lists) > self.capacity:
                    self._lists.popitem(last=False)
        return found
