"""Candidate sources over the stream state's queries and the embeddings.

* ``generic_candidates``: trending and popular items for the visitor's location and
  device, fused; backed by wider segments (the location alone, the device alone,
  everything) while the segment has too few.
* ``co_viewed_lists``: per seed, the items viewed in the same sessions (stream
  co-engagement), weighted by the seed's recency; ``co_viewed`` fuses them.
* ``similar_lists``: per seed, the items nearest its text embedding (kept per item in
  a ``NeighbourCache`` until the embeddings change; the seeds not kept are looked up
  with one store read and one batched index search), weighted the same way.

Each candidate of a seed's list is credited to that seed. ``Recommender`` fuses every
seed's co-viewed and content-similar lists into "browsing now" in one fusion (the
signals weighted by ``co_engagement_weight``); personal candidates come from
``CollaborativeModel``, fused with the lists co-viewed with the visitor's own recent
views (``personal_lists``), also in one fusion.
The state may be live (``StateView``), remote (``RemoteState``) or rebuilt offline
(``evaluation._router``): any ``StateQueries``. Every function here reads; none keeps
state between requests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec
import numpy as np

from hotshelf.recommend._blend import Candidate, fuse

if TYPE_CHECKING:
    from hotshelf.config import RecommendConfig
    from hotshelf.embeddings import Fetch
    from hotshelf.stream import ItemScore, StateQueries

__all__ = [
    "Embeddings",
    "NeighbourCache",
    "Weighted",
    "co_viewed",
    "co_viewed_lists",
    "generic_candidates",
    "personal_lists",
    "segments_for",
    "similar_lists",
]


class Embeddings(Protocol):
    """What the sources read of the embeddings: an ``EmbeddingService`` in the server,
    an ``EmbeddingReplica`` in a recommend replica."""

    @property
    def store(self) -> object | None: ...  # None (falsy) until vectors can be read

    @property
    def generation(self) -> int: ...  # changes whenever the vectors do

    def lookup(self, item_ids: Sequence[str], *, wait: bool = True) -> Fetch: ...

    def nearest_many(
        self, vectors: np.ndarray, k: int, *, excludes: Sequence[Collection[str]]
    ) -> list[list[ItemScore]]: ...


# Recency weights of the browsing seeds: the current item 1, the one before 1/2 ...
SEED_DECAY = 0.5
# A ranked list and its weight in a fusion (``fuse``)
Weighted = tuple[float, Sequence[Candidate]]


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
            ],
            n,
        )
        if len(found) >= n:
            break
    return found, segment


def co_viewed_lists(reader: StateQueries, seeds: Sequence[str], n: int) -> list[Weighted]:
    """Per seed, the items viewed in the same sessions, weighted by the seed's recency
    (the r-th most recent seed brings n / r items: older seeds weigh less, and rank
    less); each candidate is credited to its seed."""
    return [
        (SEED_DECAY**rank, [Candidate(item, count, "co-viewed", seed) for item, count
                            in reader.related_counts(seed, "viewed", max(1, n // (rank + 1)))])
        for rank, seed in enumerate(seeds)
    ]  # fmt: skip


def co_viewed(reader: StateQueries, seeds: Sequence[str], n: int) -> list[Candidate]:
    """``co_viewed_lists`` fused into the ``n`` best."""
    return fuse(co_viewed_lists(reader, seeds, n), n)


def personal_lists(
    collaborative: Sequence[Candidate], own: list[Weighted], config: RecommendConfig
) -> list[Weighted]:
    """The personal route's lists, for one fusion: the collaborative list (weight 1) and
    the lists co-viewed with each of the visitor's own recent views (``own``, from
    ``co_viewed_lists``), weighted by ``history_weight`` on top of their recency."""
    weight = config.history_weight
    return [(1.0, collaborative), *((weight * w, found) for w, found in own)]


def similar_lists(
    embeddings: Embeddings,
    seeds: Sequence[str],
    n: int,
    exclude: set[str],
    neighbours: NeighbourCache | None = None,
) -> list[Weighted]:
    """Per seed, the items nearest its text embedding (``exclude`` left out), weighted
    by the seed's recency as in ``co_viewed_lists``. A seed without a vector yet brings
    nothing; ``neighbours`` keeps each seed's list between requests. The seeds not kept
    are looked up together: one store read and one pass over the index for all."""
    found = (
        neighbours.get_many(embeddings, seeds, n)
        if neighbours is not None
        else _similar(embeddings, seeds, n)
    )
    lists: list[Weighted] = []
    for rank, seed in enumerate(seeds):
        kept = [c for c in found.get(seed, ())[: max(1, n // (rank + 1))]
                if c.item_id not in exclude]  # fmt: skip
        lists.append((SEED_DECAY**rank, kept))
    return lists


def _similar(
    embeddings: Embeddings, item_ids: Sequence[str], n: int, *, wait: bool = False
) -> dict[str, tuple[Candidate, ...]]:
    """``_nearest`` as candidates: kind "similar", each credited to the item it is near."""
    return {
        item: tuple(Candidate(s.item_id, s.score, "similar", item) for s in found)
        for item, found in _nearest(embeddings, item_ids, n, wait=wait).items()
    }


def _nearest(
    embeddings: Embeddings, item_ids: Sequence[str], n: int, *, wait: bool = False
) -> dict[str, list[ItemScore]]:
    """The ``n`` items nearest each of ``item_ids`` (distinct), by one store read and one
    index pass; items with no vector yet are left out, and (unless ``wait``) so are
    those the store's local tier lacks right now (a request never waits on its remote
    tier: the read it issues brings them in for the next one)."""
    if not item_ids:
        return {}
    fetched = embeddings.lookup(item_ids, wait=wait)
    have = [i for i, found in enumerate(fetched.found.tolist()) if found]
    if not have:
        return {}
    ids = [item_ids[i] for i in have]
    vectors = np.asarray(fetched.vectors)[have]
    answers = embeddings.nearest_many(vectors, n, excludes=[{item} for item in ids])
    return dict(zip(ids, answers, strict=True))


class _Kept(msgspec.Struct, gc=False):
    """An item's kept neighbours, as candidates credited to it (made once, not on every
    request that has the item as a seed: ~0.1 µs each, a browsing request has ~230):
    ints and a tuple of untracked candidates, never in a cycle, so the cyclic GC tracks
    neither this nor (after a collection) the tuple."""

    generation: int
    n: int
    found: tuple[Candidate, ...]


class NeighbourCache:
    """Each item's nearest neighbours, kept until the embeddings change (their service's
    ``generation``) or ``capacity`` newer items push them out; thread-safe. Lists are
    kept as tuples, which the cyclic GC stops tracking (see ``ListCache``)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[str, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(
        self, embeddings: Embeddings, item_ids: Sequence[str], n: int
    ) -> dict[str, tuple[Candidate, ...]]:
        """The ``n`` nearest items of each of ``item_ids`` (distinct), as candidates
        (``_similar``): kept lists, and the rest found together and kept; items with no
        vector yet are left out, and asked again next time."""
        generation = embeddings.generation
        out: dict[str, tuple[Candidate, ...]] = {}
        missing = []
        with self._lock:
            for item in item_ids:
                kept = self._kept(item, generation, n)
                if kept is not None:
                    self._lists.move_to_end(item)
                    out[item] = kept.found[:n]
                else:
                    missing.append(item)
        if missing:
            out.update(self._found(embeddings, missing, n, generation))
        return out

    def fill(self, embeddings: Embeddings, item_ids: Sequence[str], n: int) -> int:
        """Find and keep the lists of ``item_ids`` not kept yet (one store read and one
        index pass for all; a background thread's work, so the read may wait on the
        store's remote tier); returns how many were made."""
        generation = embeddings.generation
        with self._lock:
            missing = [item for item in item_ids if not self._kept(item, generation, n)]
        if not missing:
            return 0
        found = self._found(embeddings, missing, n, generation, wait=True)
        return sum(1 for listed in found.values() if listed)

    def _kept(self, item: str, generation: int, n: int) -> _Kept | None:
        kept = self._lists.get(item)
        if kept is not None and kept.generation == generation and kept.n >= n:
            return kept
        return None

    def _found(
        self,
        embeddings: Embeddings,
        missing: list[str],
        n: int,
        generation: int,
        *,
        wait: bool = False,
    ) -> dict[str, tuple[Candidate, ...]]:
        """``_similar`` for ``missing``, kept (those with a list) for later requests."""
        found = _similar(embeddings, missing, n, wait=wait)
        with self._lock:
            for item, listed in found.items():
                if listed:
                    self._lists[item] = _Kept(generation, n, listed)
                    self._lists.move_to_end(item)
            while len(self._lists) > self.capacity:
                self._lists.popitem(last=False)
        return found
