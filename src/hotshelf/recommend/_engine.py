"""``Recommender``: one request's context in, a routed, blended, filtered list out.

1. Validate: ``k`` within ``recommend.max_k``, satisfiable filters, a known current
   item, a known variant; the visitor's experiment arm sets the route weights.
2. Gather, under one short read of the stream state: the visitor's and the session's
   history (the seeds of "browsing now", what was bought), the segment's generic list
   and the seeds' co-viewed items. Outside it: content-similar items from the
   embeddings, and the visitor's collaborative list (or one folded in from their
   recent items when the model has not seen them).
3. Blend the routes that apply (``_blend``); generic always applies, as the backfill.
4. Keep only what may be shown (``Eligibility``), then diversify (MMR).

The per-visitor and per-segment lists come from ``ListCache`` when it has them and
are computed (and kept) when it does not; the computation is the same bounded work
either way. ``observe`` is fed every event of the log (and ``note_purchases`` the
ones this process just ingested), so caches and exclusions follow the events.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from hotshelf.config import RecommendConfig
from hotshelf.errors import FieldProblem, NotFoundError, ValidationError
from hotshelf.events import EventType, Item, StoredEvent
from hotshelf.recommend._blend import Blended, Candidate, blend, candidates, fuse
from hotshelf.recommend._cache import ListCache
from hotshelf.recommend._context import (
    Recommendation,
    Recommendations,
    RecommendRequest,
    Route,
)
from hotshelf.recommend._experiments import VariantAssigner, new_impression_id
from hotshelf.recommend._interactions import visitor_key
from hotshelf.recommend._postprocess import (
    Eligibility,
    check_filters,
    diversify,
    shortlist_size,
    top_category,
)
from hotshelf.recommend._sources import (
    NeighbourCache,
    Weighted,
    co_viewed_lists,
    generic_candidates,
    personal_lists,
    similar_lists,
)

if TYPE_CHECKING:
    from hotshelf.recommend._collaborative import CollaborativeModel
    from hotshelf.recommend._sources import Embeddings
    from hotshelf.stream import StateQueries

__all__ = ["CatalogLike", "Recommender", "StreamLike"]

# The event type behind each history list: folding a visitor in weighs its items by
# ``recommend.cf.event_weights``, as training weighed them.
_LIST_EVENTS = {"viewed": "view", "carted": "add_to_cart", "bought": "purchase"}
# Visitors whose fresh purchases are remembered beyond the stream state's histories.
_MAX_FRESH_VISITORS = 100_000
# Items per store read and index pass when the neighbour lists are precomputed.
_NEIGHBOUR_CHUNK = 16


class CatalogLike(Protocol):
    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]: ...

    def item_ids(self) -> list[str]: ...

    def __contains__(self, item_id: object) -> bool: ...


class StreamLike(Protocol):
    """Where stream state is read: ``StreamProcessor`` (with offsets) or ``RemoteState``."""

    def reading(self) -> AbstractContextManager[Any]: ...


class _Settings:
    """The request's arm's router settings: the config, with the arm's overrides."""

    def __init__(self, config: RecommendConfig, overrides: Mapping[str, Any]) -> None:
        self.blend_weights: dict[str, float] = {
            **config.blend_weights, **overrides.get("blend_weights", {})
        }  # fmt: skip
        self.diversity = float(overrides.get("diversity", config.diversity))
        self.candidates = int(overrides.get("candidates", config.candidates))


class Recommender:
    """Answers ``/v1/recommend``; thread-safe (lists and exclusions under locks)."""

    def __init__(
        self,
        config: RecommendConfig,
        catalog: CatalogLike,
        *,
        stream: StreamLike | None,
        embeddings: Embeddings | None,
        offsets: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.stream = stream
        self.embeddings = embeddings
        self._offsets = offsets  # the stream state's next offsets, read under its lock
        self.assigner = VariantAssigner(config.experiments)
        # the list budget: three quarters for visitors' and segments' lists, a quarter for
        # items' nearest neighbours by text (kept while the embeddings stand)
        budget = config.precompute_memory_mb * 1024 * 1024
        self.cache = ListCache(budget - budget // 4)
        items = budget // 4 // ListCache.entry_bytes(config.candidates)
        self.neighbours = NeighbourCache(items) if items else None
        self.model: CollaborativeModel | None = None
        weights = config.cf.event_weights
        self._fold_weights = {name: weights.get(kind, 0.0) for name, kind in _LIST_EVENTS.items()}
        self._fresh: OrderedDict[str, dict[str, int]] = OrderedDict()  # visitor -> bought
        self._fresh_lock = threading.Lock()
        # segments whose kept lists requests found stale: ``refresh_segments`` rebuilds
        # them (a background thread waits on ``segments_due``)
        self._due: set[tuple[str | None, str | None]] = set()
        self._due_lock = threading.Lock()
        self.segments_due = threading.Event()

    # -- events ---------------------------------------------------------------------------

    def set_model(self, model: CollaborativeModel | None) -> None:
        """Serve ``model`` from now on (lists made by the old one become misses)."""
        self.model = model

    def precompute(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Fill half the list budget with the CF lists of the model's most active visitors
        (the other half is for segments and everyone else); returns how many were made.
        Stops early when ``stop()`` says so or another model is set meanwhile."""
        model = self.model
        if model is None:
            return 0
        n = self.config.candidates
        room = self.cache.budget_bytes // 2 // ListCache.entry_bytes(n)
        made = 0
        for visitor in model.most_active(room):
            if stop() or self.model is not model:
                break
            if self.cache.visitor_list(visitor, model.version, count=False) is None:
                found = candidates(model.recommend(visitor, n), "cf")
                self.cache.put_visitor(visitor, model.version, found)
                made += 1
        return made

    def precompute_neighbours(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Keep the content neighbours of the most popular items, then of the rest of
        the catalog, as many as the neighbour budget holds, so a request seeded by one
        finds its list kept instead of searching the index (~0.5 ms for a few seeds)
        right after a start or a change of the embeddings; returns how many lists were
        made. A few items per store read and index pass, so no step holds the GIL for
        long while requests are served."""
        neighbours, embeddings = self.neighbours, self.embeddings
        if neighbours is None or embeddings is None or embeddings.store is None:
            return 0
        if self.stream is None:
            return 0
        room = neighbours.capacity
        with self.stream.reading() as reader:
            popular = [s.item_id for s in reader.popular(None, None, None, None, room)]
        # the popular table holds a few hundred items at most: the rest of the room goes
        # to the catalog in its own order (one that fits is covered whole)
        seeds = list(dict.fromkeys([*popular, *self.catalog.item_ids()[:room]]))[:room]
        made = 0
        for start in range(0, len(seeds), _NEIGHBOUR_CHUNK):
            if stop():
                break
            chunk = seeds[start : start + _NEIGHBOUR_CHUNK]
            made += neighbours.fill(embeddings, chunk, self.config.candidates)
        return made

    def observe(self, topic: str, offset: int, event: StoredEvent) -> None:
        """One event of the log: drop lists it changes, remember what it bought."""
        if event.type is EventType.IMPRESSION:
            return
        self.cache.note_event(topic, offset, event.location, event.device)
        visitor = visitor_key(event.user_id, event.cookie_id)
        if visitor is not None:
            self.cache.invalidate_visitor(visitor)
        self.note_purchases([event])

    def note_purchases(self, events: Iterable[StoredEvent]) -> None:
        """Remember purchases at once, so the very next request excludes them even
        before the stream state has applied them."""
        for event in events:
            if event.type is not EventType.PURCHASE:
                continue
            items = event.item_ids or ([event.item_id] if event.item_id else [])
            for key in {event.user_id, event.cookie_id, event.session_id} - {None}:
                self._remember(f"{key}", items, event.ts_ms)

    def _remember(self, key: str, items: list[str], ts_ms: int) -> None:
        with self._fresh_lock:
            bought = self._fresh.setdefault(key, {})
            self._fresh.move_to_end(key)
            for item in items:
                bought[item] = max(bought.get(item, 0), ts_ms)
            while len(self._fresh) > _MAX_FRESH_VISITORS:
                self._fresh.popitem(last=False)

    def _freshly_bought(self, keys: Iterable[str | None], now_ms: int) -> set[str]:
        since = now_ms - int(self.config.exclude_bought_s * 1000)
        with self._fresh_lock:
            return {
                item
                for key in keys
                if key is not None
                for item, ts in self._fresh.get(key, {}).items()
                if ts >= since
            }

    # -- requests -------------------------------------------------------------------------

    def recommend(self, request: RecommendRequest, now_ms: int | None = None) -> Recommendations:
        """The list for ``request``; raises ``ValidationError`` / ``NotFoundError`` for bad
        input, never for a missing model, stream or embedding service (routes that
        need one are skipped)."""
        k = self._check(request)
        variant = self.assigner.select(request)
        settings = _Settings(self.config, variant.overrides)
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        gathered = self._gather(request, settings.candidates, now)
        excluded = gathered.bought | self._freshly_bought(
            (request.user_id, request.cookie_id, request.session_id), now
        )
        if request.current_item_id is not None:
            excluded.add(request.current_item_id)
        routes = self._routes(request, gathered, settings.candidates, excluded)
        blended = blend(routes, settings.blend_weights)
        chosen = self._post(request, blended, k, settings.diversity, excluded)
        model = self.model
        return Recommendations(
            impression_id=new_impression_id(),
            items=[self._explained(b, chosen.items, request) for b in chosen.order],
            routes=[route for route in Route if route in routes],
            variant=variant.name,
            model_version=model.version if model is not None else None,
        )

    def _check(self, request: RecommendRequest) -> int:
        k = request.k if request.k is not None else self.config.default_k
        if k > self.config.max_k:
            problem = FieldProblem("$.k", f"at most {self.config.max_k}")
            raise ValidationError("invalid recommendation request", [problem])
        check_filters(request.filters, self.config.max_filter_categories)
        current = request.current_item_id
        if current is not None and current not in self.catalog:
            raise NotFoundError(f"current_item_id {current!r} is not in the catalog")
        return k

    # -- gathering ------------------------------------------------------------------------

    def _gather(self, request: RecommendRequest, n: int, now_ms: int) -> _Gathered:
        current = [request.current_item_id] if request.current_item_id is not None else []
        if self.stream is None:
            return _Gathered(current, set(), {}, [], [], [])
        limit = self.config.session_items
        with self.stream.reading() as reader:
            user = reader.history(user_id=request.user_id) if request.user_id else None
            session = reader.history(session_id=request.session_id) if request.session_id else None
            viewed = session.viewed if session is not None else []
            seeds = list(dict.fromkeys([*current, *viewed]))[:limit]
            generic = self._generic(reader, request.location, request.device, n, now_ms)
            co = co_viewed_lists(reader, seeds, n)
            own_seeds = user.viewed[:limit] if user is not None else []
            own = co_viewed_lists(reader, own_seeds, n)
        bought: set[str] = set()
        recent: dict[str, float] = {}
        for history in (user, session):
            if history is None:
                continue
            bought.update(history.bought)
            for name, weight in self._fold_weights.items():
                for item in getattr(history, name):
                    recent[item] = max(recent.get(item, 0.0), weight)
        return _Gathered(seeds, bought, recent, generic, co, own)

    def _generic(
        self, reader: StateQueries, location: str | None, device: str | None, n: int, now_ms: int
    ) -> Sequence[Candidate]:
        """The segment's generic list: the kept one while it is younger than
        ``segment_refresh_s`` (a stale one past half that age is handed to
        ``refresh_segments``), else built here.

        Under a live clickstream every segment list is stale again within milliseconds
        of a rebuild; rebuilding on the request (two ranked queries per segment tried,
        3-8 ms, under the stream lock) made every request pay it: at 5,000 events/s the
        server fell from 250 to 176 answered requests/s. Now a request does the same
        work whether its segment saw events or not, and a list is never older than
        ``segment_refresh_s``.
        """
        max_age_ms = round(self.config.segment_refresh_s * 1000)
        kept = self.cache.segment_list(location, device, now_ms, max_age_ms)
        if kept is None:
            return self._build_segment(reader, location, device, n, now_ms)
        if kept.stale and now_ms - kept.built_ms >= max_age_ms // 2:
            with self._due_lock:
                self._due.add((location, device))
            self.segments_due.set()
        return kept.candidates

    def _build_segment(
        self, reader: StateQueries, location: str | None, device: str | None, n: int, now_ms: int
    ) -> Sequence[Candidate]:
        built_at = self._offsets() if self._offsets is not None else None
        weight = self.config.trending_weight
        found, source = generic_candidates(reader, location, device, n, weight)
        if built_at is not None:  # no offsets (partitions' snapshots): never kept
            self.cache.put_segment(
                location, device, found, built_at=built_at, source=source, built_ms=now_ms
            )
        return found

    def refresh_segments(self, now_ms: int | None = None) -> int:
        """Rebuild the segment lists requests found stale (a background thread's work:
        requests meanwhile get the kept lists); returns how many were rebuilt."""
        with self._due_lock:
            due, self._due = self._due, set()
            self.segments_due.clear()
        if self.stream is None:
            return 0
        for location, device in sorted(due, key=str):
            with self.stream.reading() as reader:  # one segment per lock hold
                now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
                self._build_segment(reader, location, device, self.config.candidates, now)
        return len(due)

    def _personal(self, visitor: str, recent: Mapping[str, float], n: int) -> Sequence[Candidate]:
        model = self.model
        if model is None:
            return []
        cached = self.cache.visitor_list(visitor, model.version)
        if cached is not None:
            return cached
        if visitor in model:
            found = model.recommend(visitor, n)
        elif recent:
            found = model.recommend_for_items(recent, n)
        else:
            return []
        listed = candidates(found, "cf")
        self.cache.put_visitor(visitor, model.version, listed)
        return listed

    def _routes(
        self, request: RecommendRequest, gathered: _Gathered, n: int, excluded: set[str]
    ) -> dict[Route, Sequence[Candidate]]:
        routes: dict[Route, Sequence[Candidate]] = {}
        if gathered.seeds:
            # one fusion over every seed's lists of both signals: fusing each signal
            # first, then the two, made three fusions and two lists thrown away
            weight = self.config.co_engagement_weight
            lists = [(weight * w, found) for w, found in gathered.co_viewed]
            if self.embeddings is not None and self.embeddings.store is not None:
                seeds = gathered.seeds
                similar = similar_lists(self.embeddings, seeds, n, set(seeds), self.neighbours)
                lists += [((1.0 - weight) * w, found) for w, found in similar]
            browsing = fuse(lists, n)
            if browsing:
                routes[Route.BROWSING] = browsing
        visitor = visitor_key(request.user_id, request.cookie_id) or request.cookie_id
        collaborative = self._personal(visitor, gathered.recent, n)
        personal = fuse(personal_lists(collaborative, gathered.own_co_viewed, self.config), n)
        if personal:
            routes[Route.PERSONAL] = personal
        if gathered.generic:
            routes[Route.GENERIC] = gathered.generic
        return routes

    # -- post-processing ------------------------------------------------------------------

    def _post(
        self,
        request: RecommendRequest,
        blended: Iterator[Blended],
        k: int,
        diversity: float,
        excluded: set[str],
    ) -> _Chosen:
        eligibility = Eligibility(request.filters, excluded)
        # MMR re-ranks a shortlist; without it the first k eligible are the answer
        wanted = shortlist_size(k) if diversity > 0 else k
        pool: list[Blended] = []
        items: dict[str, Item] = {}
        # take and look up only what is needed: what is still missing and a margin for
        # the ineligible (a chunk of twice the need made and looked up ~40% too many)
        margin = max(4, wanted // 4)
        while len(pool) < wanted:
            chunk = list(islice(blended, wanted - len(pool) + margin))
            if not chunk:
                break
            items.update(self.catalog.get_many([b.item_id for b in chunk]))
            pool.extend(b for b in chunk if eligibility.allows(items.get(b.item_id)))
        pool = pool[:wanted]
        seeds = {b.because for b in pool if b.because is not None} - items.keys()
        items.update(self.catalog.get_many(seeds))
        if diversity <= 0:
            return _Chosen(pool, items)
        vectors = None
        if pool and self.embeddings is not None and self.embeddings.store:
            # never waits on the store's remote tier (requests run on the event loop): an
            # item whose vector the local tier lacks right now is a zero vector, unlike all
            ids = [b.item_id for b in pool]
            vectors = np.asarray(self.embeddings.lookup(ids, wait=False).vectors)
        groups = [top_category(items[b.item_id]) for b in pool]
        order = diversify(pool, k, diversity, vectors=vectors, groups=groups)
        return _Chosen(order, items)

    def _explained(
        self, chosen: Blended, items: Mapping[str, Item], request: RecommendRequest
    ) -> Recommendation:
        return Recommendation(
            item_id=chosen.item_id,
            score=round(chosen.score, 6),
            route=chosen.route,
            reason=_reason(chosen, items, request),
        )


class _Gathered(NamedTuple):
    """What one read of the stream state gave a request."""

    seeds: list[str]  # "browsing now": the current item, then the session's views
    bought: set[str]
    recent: dict[str, float]  # the visitor's and session's items, to fold into CF
    generic: Sequence[Candidate]
    co_viewed: list[Weighted]  # ... with each seed, weighted by its recency
    own_co_viewed: list[Weighted]  # ... with each of the user's own recent views


class _Chosen(NamedTuple):
    order: list[Blended]
    items: dict[str, Item]  # the catalog entries of every candidate and seed


def _reason(chosen: Blended, items: Mapping[str, Item], request: RecommendRequest) -> str:
    """Why the shopper sees the item, in words."""
    if chosen.kind == "cf":
        return "customers like you bought"
    if chosen.because is not None:  # co-viewed with, or similar to, an item they viewed
        seed = items.get(chosen.because)
        return f"because you viewed {seed.title}" if seed is not None else "similar to this"
    where = "near you" if request.location else f"on {request.device}" if request.device else ""
    what = "trending" if chosen.kind == "trending" else "popular"
    return f"{what} {where or 'right now'}"
