"""The hotshelf router, offline: the serving code's routing, blending and post-processing
over sources rebuilt from the training period.

What is shared with ``/v1/recommend``: the route rules (a known visitor or one with
recent items gets collaborative filtering, a session in hand gets "browsing now",
generic always backs them up), the candidate functions ``generic_candidates`` and
``co_viewed`` (``hotshelf.recommend._sources``), ``CollaborativeModel`` with its
fold-in, ``blend`` with ``recommend.blend_weights``, ``Eligibility`` and ``diversify``.

What stands in for live state: ``_TrainingState`` answers the stream-state queries from
the training interactions with the stream's definitions: popular = engagement units
(``stream.event_weights``) over the whole training period, trending = units over its
last stretch (the shortest stream window for data with a wall clock, the last 5% of
interactions otherwise), co-viewed = items within ``stream.co_window`` of each other
in a session, top ``stream.related_capacity`` per item. Content similarity
(embeddings) is left out offline: one dataset has no text, and encoding the others
would dominate the run.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from hotshelf.config import Config
from hotshelf.errors import ConflictError
from hotshelf.evaluation._cases import Case
from hotshelf.evaluation._dataset import Interaction
from hotshelf.evaluation._recommender import OfflineRecommender
from hotshelf.evaluation._split import TrainingData
from hotshelf.events import EventType, Item, StoredEvent
from hotshelf.recommend._blend import Candidate, blend, candidates, fuse
from hotshelf.recommend._collaborative import CollaborativeModel
from hotshelf.recommend._context import Route
from hotshelf.recommend._interactions import InteractionsBuilder
from hotshelf.recommend._postprocess import Eligibility, diversify, shortlist_size, top_category
from hotshelf.recommend._sources import (
    co_viewed,
    co_viewed_lists,
    generic_candidates,
    personal_lists,
)
from hotshelf.stream import History, ItemScore

__all__ = ["HotshelfRouter"]

_TRENDING_SHARE = 0.05  # without a wall clock: "recent" is this share of the interactions


class _TrainingState:
    """The stream-state queries the sources ask, answered from training interactions."""

    def __init__(self, config: Config, train: TrainingData) -> None:
        weights = config.stream.event_weights
        units = {
            EventType.VIEW: weights.get("view", 1),
            EventType.PURCHASE: weights.get("purchase", 1),
        }
        interactions = train.interactions
        if train.wall_clock:
            since = train.at - min(config.stream.windows_s)
            recent = [i for i in interactions if i.timestamp >= since]
        else:
            recent = list(interactions[-max(1, int(len(interactions) * _TRENDING_SHARE)) :])
        self._popular = _ranked(_units(interactions, units))
        self._trending = _ranked(_units(recent, units))
        self._related = _co_viewed(interactions, config.stream.co_window,
                                   config.stream.related_capacity)  # fmt: skip
        self._now_ms = int(train.at * 1000)

    @property
    def now_ms(self) -> int:
        return self._now_ms

    def trending(self, location: str | None = None, device: str | None = None,
                 category: str | None = None, window: float | None = None,
                 k: int = 20) -> list[ItemScore]:  # fmt: skip
        return self._trending[:k]

    def popular(self, location: str | None = None, device: str | None = None,
                category: str | None = None, window: float | None = None,
                k: int = 20) -> list[ItemScore]:  # fmt: skip
        return self._popular[:k]

    def related(self, item_id: str, kind: str = "viewed", k: int = 20) -> list[ItemScore]:
        return [ItemScore(item, float(n)) for item, n in self.related_counts(item_id, kind, k)]

    def related_counts(
        self, item_id: str, kind: str = "viewed", k: int = 20
    ) -> list[tuple[str, int]]:
        return self._related.get(item_id, [])[:k]

    def history(self, *, user_id: str | None = None, session_id: str | None = None) -> History:
        return History(viewed=[], carted=[], bought=[])


def _units(interactions: Iterable[Interaction], units: dict[EventType, int]) -> Counter[str]:
    """Engagement units per item: each interaction weighted by its event type."""
    total: Counter[str] = Counter()
    for i in interactions:
        total[i.item] += units.get(i.kind, 1)
    return total


def _ranked(counts: Counter[str]) -> list[ItemScore]:
    ordered = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    return [ItemScore(item, float(n)) for item, n in ordered]


def _co_viewed(
    interactions: Sequence[Interaction], window: int, capacity: int
) -> dict[str, list[tuple[str, int]]]:
    """Per item, the items seen within ``window`` places of it in the same session (or
    the same visitor's sequence where the data has no sessions), most often first."""
    sequences: dict[str, list[str]] = defaultdict(list)
    for i in interactions:
        sequences[i.session or i.visitor].append(i.item)
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    for items in sequences.values():
        for n, item in enumerate(items):
            for earlier in items[max(0, n - window) : n]:
                if earlier != item:
                    pairs[item][earlier] += 1
                    pairs[earlier][item] += 1
    return {
        item: [(other, -neg) for neg, other in
               heapq.nsmallest(capacity, ((-c, o) for o, c in counts.items()))]
        for item, counts in pairs.items()
    }  # fmt: skip


class HotshelfRouter(OfflineRecommender):
    """``/v1/recommend``'s routing over training-period sources (see the module doc)."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self._state: _TrainingState | None = None
        self._model: CollaborativeModel | None = None
        self._items: dict[str, Item] = {}

    @property
    def name(self) -> str:
        return "hotshelf router"

    def fit(self, train: TrainingData) -> None:
        cf = self.config.recommend.cf
        builder = InteractionsBuilder(cf)
        for n, i in enumerate(train.interactions):
            ts = int(i.timestamp * 1000)
            builder.add(StoredEvent(event_id=str(n), type=i.kind, ts_ms=ts, received_ms=ts,
                                    user_id=i.visitor, item_id=i.item))  # fmt: skip
        self._model = CollaborativeModel.fit(builder.build(), cf)
        self._state = _TrainingState(self.config, train)
        # The data describes some items only (Diginetica: none); the rest are still real
        # items that may be shown, with no category for diversity to spread over.
        self._items = {item: train.items.get(item) or Item(item_id=item, title=item)
                       for item in train.catalog()}  # fmt: skip

    def recommend(self, case: Case, k: int) -> list[str]:
        if self._state is None:
            raise ConflictError("fit the hotshelf router before asking it for recommendations")
        rec = self.config.recommend
        n = rec.candidates
        seeds = list(dict.fromkeys(reversed(case.context_items)))[: rec.session_items]
        routes: dict[Route, list[Candidate]] = {}
        if seeds:
            routes[Route.BROWSING] = co_viewed(self._state, seeds, n)
        routes[Route.PERSONAL] = self._personal(case, n)
        generic, _ = generic_candidates(self._state, None, None, n, rec.trending_weight)
        routes[Route.GENERIC] = generic
        blended = blend({r: found for r, found in routes.items() if found}, rec.blend_weights)
        eligibility = Eligibility(None, case.exclude)
        pool = [b for b in blended if eligibility.allows(self._items.get(b.item_id))]
        pool = pool[: shortlist_size(k)]
        groups = [top_category(self._items[b.item_id]) for b in pool]
        return [b.item_id for b in diversify(pool, k, rec.diversity, groups=groups)]

    def _personal(self, case: Case, n: int) -> list[Candidate]:
        assert self._model is not None  # fitted with the state
        exclude = case.exclude
        if case.visitor in self._model:
            found = self._model.recommend(case.visitor, n, exclude=exclude)
        else:
            cf_weights = self.config.recommend.cf.event_weights
            weights = {e.item: cf_weights.get(e.kind.value, 0.0) for e in case.context}
            found = self._model.recommend_for_items(weights, n, exclude=exclude) if weights else []
        cf = candidates(found, "cf")
        assert self._state is not None
        seeds = list(reversed(case.history))[: self.config.recommend.session_items]
        own = co_viewed_lists(self._state, seeds, n)
        return fuse(personal_lists(cf, own, self.config.recommend), n)
