"""Candidate sources over the stream state's queries and the embeddings.

* ``generic_candidates``: trending and popular items for the visitor's location and
  device, fused; backed by wider segments (the location alone, the device alone,
  everything) while the segment has too few.
* ``co_viewed``: items viewed in the same sessions as the seeds (stream
  co-engagement), seeds weighted by recency; each credited to the seed that led to it.
* ``content_similar``: items nearest the seeds' recency-weighted mean text embedding
  (one store read, one index search), each credited to the seed it is most like.

``Recommender`` fuses co-viewed and content-similar into "browsing now"; personal
candidates come from ``CollaborativeModel``. The state may be live (``StateView``),
remote (``RemoteState``) or rebuilt offline (``evaluation._router``): any
``StateQueries``. Every function here reads; none keeps state between requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hotshelf.recommend._blend import Candidate, fuse

if TYPE_CHECKING:
    from hotshelf.embeddings import EmbeddingService
    from hotshelf.stream import StateQueries

__all__ = ["co_viewed", "content_similar", "generic_candidates", "segments_for"]

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
    """Items viewed in the same sessions as the seeds, seeds weighted by recency."""
    lists = [
        (SEED_DECAY**rank, [Candidate(s.item_id, s.score, "co-viewed", seed)
                            for s in reader.related(seed, "viewed", n)])
        for rank, seed in enumerate(seeds)
    ]  # fmt: skip
    return fuse(lists)[:n]


def content_similar(
    embeddings: EmbeddingService, seeds: Sequence[str], n: int, exclude: set[str]
) -> list[Candidate]:
    """Items nearest the seeds' recency-weighted mean embedding, each credited to the
    seed it is most similar to. Seeds without a vector yet are skipped."""
    fetched = embeddings.lookup(seeds)
    rows = [i for i, ok in enumerate(fetched.found) if ok]
    if not rows:
        return []
    vectors = np.asarray(fetched.vectors)[rows]
    mean = np.array([SEED_DECAY**i for i in rows], dtype=np.float32) @ vectors
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        return []
    nearest = embeddings.nearest(mean / norm, n, exclude=exclude)
    if not nearest:
        return []
    found = np.asarray(embeddings.lookup([s.item_id for s in nearest]).vectors)
    closest = np.argmax(found @ vectors.T, axis=1)
    return [
        Candidate(s.item_id, s.score, "similar", seeds[rows[int(j)]])
        for s, j in zip(nearest, closest, strict=True)
    ]
