"""``Recommender`` without HTTP, over a real ``StreamState`` and a real trained model:
route rules, exclusions, the fresh-purchase memory, list invalidation, bad input, and
the routes that are skipped (never an error) when a part is missing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import pytest

from hotshelf.config import Config, StreamConfig
from hotshelf.errors import NotFoundError, ValidationError
from hotshelf.events import EventType, Item, StoredEvent
from hotshelf.recommend import RecommendRequest, Route
from hotshelf.recommend._collaborative import CollaborativeModel
from hotshelf.recommend._engine import Recommender
from hotshelf.recommend._interactions import InteractionsBuilder
from hotshelf.stream import StreamState
from hotshelf.stream._view import StateView

NOW_MS = 1_700_000_000_000
CATEGORIES = ("Tools", "Fruit")


class Catalog(dict[str, Item]):
    """The catalog's lookups the recommender uses, over a plain dict."""

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        return {i: self[i] for i in item_ids if i in self}

    def item_ids(self) -> list[str]:
        return list(self)


class Stream:
    """What ``Recommender`` reads: a lock-free stand-in for the processor's ``reading``
    over a real ``StreamState``."""

    def __init__(self, state: StreamState) -> None:
        self.view = StateView([state])

    @contextlib.contextmanager
    def reading(self) -> Iterator[StateView]:
        yield self.view


def events() -> list[StoredEvent]:
    """Twenty users, each viewing four items of one category in one session, buying one."""
    out = []
    for u in range(20):
        category = CATEGORIES[u % 2].lower()
        items = [f"{category}-{(u + j) % 8}" for j in range(4)]
        for j, item in enumerate(items):
            t = NOW_MS - 3_600_000 + u * 60_000 + j * 10_000
            out.append(StoredEvent(event_id=f"v{u}{j}", type=EventType.VIEW, ts_ms=t,
                                   received_ms=t, user_id=f"u{u}", cookie_id=f"c{u}",
                                   session_id=f"s{u}", item_id=item, location="Oslo",
                                   device="mobile"))  # fmt: skip
        t = NOW_MS - 3_600_000 + u * 60_000 + 50_000
        out.append(StoredEvent(event_id=f"p{u}", type=EventType.PURCHASE, ts_ms=t, received_ms=t,
                               user_id=f"u{u}", cookie_id=f"c{u}", session_id=f"s{u}",
                               item_id=items[0], location="Oslo", device="mobile"))  # fmt: skip
    return out


Parts = tuple[Catalog, Stream, CollaborativeModel]


@pytest.fixture(scope="module")
def parts() -> Parts:
    config = Config()
    catalog = Catalog({
        f"{c.lower()}-{i}": Item(item_id=f"{c.lower()}-{i}", title=f"{c} {i}", category=[c])
        for c in CATEGORIES for i in range(8)
    })  # fmt: skip
    state = StreamState(StreamConfig())
    builder = InteractionsBuilder(config.recommend.cf)
    for event in events():
        category = tuple(catalog[event.item_id].category) if event.item_id else None
        state.apply(event, category, False)
        builder.add(event)
    model = CollaborativeModel.fit(builder.build(), config.recommend.cf)
    return catalog, Stream(state), model


def recommender(
    parts: Parts, segment_refresh_s: float = 2.0, offsets: dict[str, int] | None = None
) -> Recommender:
    """``offsets``: the stream state's next offsets, as the test moves them on."""
    catalog, stream, model = parts
    config = msgspec.structs.replace(Config().recommend, segment_refresh_s=segment_refresh_s)
    applied = offsets if offsets is not None else {"events": 100}
    engine = Recommender(config, catalog, stream=stream, embeddings=None,
                         offsets=lambda: dict(applied))  # fmt: skip
    engine.set_model(model)
    return engine


def ask(engine: Recommender, at: int = NOW_MS, **context: Any) -> list[tuple[str, Route, str]]:
    request = msgspec.convert({"cookie_id": "anon", **context}, RecommendRequest)
    answer = engine.recommend(request, at)
    return [(i.item_id, i.route, i.reason) for i in answer.items]


def _view(location: str | None = None, device: str | None = None) -> StoredEvent:
    return StoredEvent(event_id="y", type=EventType.VIEW, ts_ms=NOW_MS, received_ms=NOW_MS,
                       user_id="u4", cookie_id="c4", item_id="tools-1", location=location,
                       device=device)  # fmt: skip


def test_routes_follow_what_is_known_of_the_shopper(parts: Parts) -> None:
    engine = recommender(parts)
    new = ask(engine, location="Oslo", device="mobile", k=5)
    assert {route for _, route, _ in new} == {Route.GENERIC}
    known = ask(engine, cookie_id="c0", user_id="u0", k=10)
    assert Route.PERSONAL in {route for _, route, _ in known}
    browsing = ask(engine, session_id="fresh", current_item_id="fruit-3", k=10)
    assert browsing[0][1] is Route.BROWSING
    assert browsing[0][2] == "because you viewed Fruit 3"
    assert "fruit-3" not in {item for item, _, _ in browsing}


def test_what_a_visitor_bought_is_never_recommended(parts: Parts) -> None:
    engine = recommender(parts)
    assert "tools-0" not in {item for item, _, _ in ask(engine, cookie_id="c0", user_id="u0")}
    first = ask(engine, cookie_id="c2", user_id="u2", k=10)[0][0]
    fresh = StoredEvent(event_id="x", type=EventType.PURCHASE, ts_ms=NOW_MS, received_ms=NOW_MS,
                        user_id="u2", cookie_id="c2", item_id=first)  # fmt: skip
    engine.note_purchases([fresh])
    assert first not in {item for item, _, _ in ask(engine, cookie_id="c2", user_id="u2", k=10)}


def test_lists_are_cached_and_dropped_by_the_visitors_events(parts: Parts) -> None:
    engine = recommender(parts, segment_refresh_s=0)  # a stale segment list: rebuilt at once
    ask(engine, cookie_id="c4", user_id="u4")
    ask(engine, cookie_id="c4", user_id="u4")
    hits = engine.cache.stats().hits
    assert hits >= 2  # the visitor's list and the segment's list
    engine.observe("events", 100, _view())
    ask(engine, cookie_id="c4", user_id="u4")
    stats = engine.cache.stats()
    assert stats.invalidations >= 2  # both lists were built again
    assert stats.hits == hits


def test_a_stale_segment_list_is_served_while_young_and_rebuilt_off_the_request(
    parts: Parts,
) -> None:
    applied = {"events": 100}
    engine = recommender(parts, segment_refresh_s=2.0, offsets=applied)
    where = {"location": "Oslo", "device": "mobile", "k": 5}
    first = ask(engine, **where)
    engine.observe("events", 100, _view("Oslo", "mobile"))  # the list is stale from now
    applied["events"] = 101  # and the state applies it

    def kept_built_ms() -> int:
        kept = engine.cache.segment_list("Oslo", "mobile", NOW_MS, 10_000)
        assert kept is not None
        return kept.built_ms

    assert ask(engine, at=NOW_MS + 900, **where) == first  # young: served as it is
    assert not engine.segments_due.is_set()
    ask(engine, at=NOW_MS + 1_100, **where)  # past half its age: served, and due
    assert engine.segments_due.is_set()
    assert kept_built_ms() == NOW_MS  # neither request rebuilt it
    assert engine.refresh_segments(NOW_MS + 1_200) == 1  # what the background thread does
    assert kept_built_ms() == NOW_MS + 1_200
    assert not engine.segments_due.is_set()
    kept = engine.cache.segment_list("Oslo", "mobile", NOW_MS + 1_200, 0)
    assert kept is not None
    assert not kept.stale
    assert engine.refresh_segments() == 0  # nothing due twice


def test_a_request_never_gets_a_segment_list_older_than_the_refresh_time(parts: Parts) -> None:
    applied = {"events": 100}
    engine = recommender(parts, segment_refresh_s=2.0, offsets=applied)
    where = {"location": "Oslo", "device": "mobile", "k": 5}
    ask(engine, **where)
    engine.observe("events", 100, _view("Oslo", "mobile"))
    applied["events"] = 101
    ask(engine, at=NOW_MS + 2_000, **where)  # no refresh ran: built here, on the request
    kept = engine.cache.segment_list("Oslo", "mobile", NOW_MS + 2_000, 0)
    assert kept is not None
    assert kept.built_ms == NOW_MS + 2_000


def test_missing_parts_skip_routes_never_fail(parts: Parts) -> None:
    catalog, _, _ = parts
    bare = Recommender(Config().recommend, catalog, stream=None, embeddings=None)
    answer = bare.recommend(
        RecommendRequest(cookie_id="a", user_id="u0", current_item_id="tools-1")
    )
    assert answer.items == []
    assert answer.model_version is None
    assert answer.routes == []


def test_bad_input_is_refused_before_any_work(parts: Parts) -> None:
    engine = recommender(parts)
    with pytest.raises(ValidationError, match="invalid recommendation request"):
        ask(engine, k=101)
    with pytest.raises(NotFoundError, match="nope"):
        ask(engine, current_item_id="nope")
    with pytest.raises(ValidationError, match="unknown experiment variant"):
        ask(engine, variant="treatment")


def test_the_most_active_visitors_lists_are_precomputed(parts: Parts) -> None:
    engine = recommender(parts)
    _, _, model = parts
    made = engine.precompute()
    assert made == len(model.visitors)  # 20 lists fit well inside half the budget
    assert engine.cache.stats().entries == made
    assert engine.precompute() == 0  # already there
    ask(engine, cookie_id="c7", user_id="u7")
    assert engine.cache.stats().hits >= 1  # the request found its precomputed list
    assert engine.precompute(stop=lambda: True) == 0
