"""``ListCache``: model versions, event-driven staleness, LRU under a byte budget, threads."""

from __future__ import annotations

import gc
import random
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.recommend._blend import Candidate
from hotshelf.recommend._cache import CANDIDATE_BYTES, ENTRY_OVERHEAD, ListCache


def _list(*ids: str) -> tuple[Candidate, ...]:
    return tuple(Candidate(item, 1.0 / (n + 1), "trending") for n, item in enumerate(ids))


def _size(n: int) -> int:
    return ENTRY_OVERHEAD + CANDIDATE_BYTES * n


NOW = 1_700_000_000_000


def _put(
    cache: ListCache,
    location: str | None,
    device: str | None,
    candidates: tuple[Candidate, ...],
    *,
    built_at: dict[str, int],
    source: tuple[str | None, str | None],
) -> None:
    """``put_segment`` of a list built at NOW."""
    cache.put_segment(location, device, candidates, built_at=built_at, source=source, built_ms=NOW)


def _fresh(
    cache: ListCache, location: str | None, device: str | None
) -> tuple[Candidate, ...] | None:
    """The kept list if it reflects every event seen (``max_age_ms=0``: stale is a miss)."""
    kept = cache.segment_list(location, device, NOW, 0)
    return None if kept is None else kept.candidates


def test_kept_lists_cost_the_cyclic_gc_nothing() -> None:
    # a server keeps thousands of them: as tracked lists, every full collection visited
    # each candidate of each list (pauses of 15-40 ms for every request in flight)
    cache = ListCache(budget_bytes=100_000)
    cache.put_visitor("v1", "m1", list(_list("a", "b")))
    cache.put_segment("Paris", "mobile", list(_list("c", "d")), built_at={"events": 3},
                      source=("Paris", "mobile"), built_ms=NOW)  # fmt: skip
    gc.collect()  # tuples of untracked objects stop being tracked at a collection
    kept = [cache.visitor_list("v1", "m1"), _fresh(cache, "Paris", "mobile")]
    assert kept == [_list("a", "b"), _list("c", "d")]
    assert not [found for found in kept if gc.is_tracked(found)]
    assert not [c for found in kept for c in found or () if gc.is_tracked(c)]
    assert not [entry for entry in cache._entries.values() if gc.is_tracked(entry)]


# -- visitors -----------------------------------------------------------------------------


def test_a_visitor_list_is_kept_under_its_model_version() -> None:
    cache = ListCache(budget_bytes=10_000)
    assert cache.visitor_list("v1", "m1") is None
    cache.put_visitor("v1", "m1", _list("a", "b"))
    assert cache.visitor_list("v1", "m1") == _list("a", "b")
    assert cache.visitor_list("v2", "m1") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (1, 2, 1, _size(2))


def test_another_model_version_is_a_miss_and_drops_the_list() -> None:
    cache = ListCache(budget_bytes=10_000)
    cache.put_visitor("v1", "m1", _list("a"))
    assert cache.visitor_list("v1", "m2") is None
    stats = cache.stats()
    assert (stats.misses, stats.invalidations, stats.entries, stats.bytes) == (1, 1, 0, 0)


def test_invalidate_visitor() -> None:
    cache = ListCache(budget_bytes=10_000)
    cache.put_visitor("v1", "m1", _list("a"))
    cache.put_visitor("v2", "m1", _list("b"))
    cache.invalidate_visitor("v1")
    cache.invalidate_visitor("never-seen")  # nothing to drop: not counted
    assert cache.visitor_list("v1", "m1") is None
    assert cache.visitor_list("v2", "m1") == _list("b")
    assert cache.stats().invalidations == 1


def test_invalidating_a_visitor_leaves_segments_alone() -> None:
    cache = ListCache(budget_bytes=10_000)
    _put(cache, "paris", None, _list("a"), built_at={}, source=("paris", None))
    cache.invalidate_visitor("paris")
    assert _fresh(cache, "paris", None) == _list("a")


def test_putting_again_replaces_without_double_counting() -> None:
    cache = ListCache(budget_bytes=10_000)
    cache.put_visitor("v1", "m1", _list("a", "b", "c"))
    cache.put_visitor("v1", "m2", _list("d"))
    assert cache.visitor_list("v1", "m2") == _list("d")
    stats = cache.stats()
    assert (stats.entries, stats.bytes) == (1, _size(1))


# -- segments -----------------------------------------------------------------------------


def test_a_segment_list_is_stale_once_an_event_at_or_past_its_offsets_is_seen() -> None:
    cache = ListCache(budget_bytes=10_000)
    _put(cache, "paris", "mobile", _list("a"), built_at={"events": 100}, source=("paris", "mobile"))
    cache.note_event("events", 99, "paris", "mobile")  # already reflected in the list
    cache.note_event("catalog", 500, "paris", "mobile")  # a topic the list did not read
    assert _fresh(cache, "paris", "mobile") == _list("a")
    cache.note_event("events", 100, "paris", "mobile")
    assert _fresh(cache, "paris", "mobile") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.invalidations, stats.entries) == (1, 1, 1, 0)


def test_every_topic_the_list_was_built_from_counts() -> None:
    cache = ListCache(budget_bytes=10_000)
    built_at = {"events": 100, "catalog": 7}
    _put(cache, "paris", "mobile", _list("a"), built_at=built_at, source=("paris", "mobile"))
    cache.note_event("catalog", 7, "paris", "mobile")
    assert _fresh(cache, "paris", "mobile") is None


def test_an_event_seen_before_the_put_but_not_reflected_makes_the_list_stale() -> None:
    cache = ListCache(budget_bytes=10_000)
    cache.note_event("events", 150, "paris", "mobile")
    _put(cache, "paris", "mobile", _list("a"), built_at={"events": 100}, source=("paris", "mobile"))
    assert _fresh(cache, "paris", "mobile") is None


def _paris_mobile_at_100() -> ListCache:
    """A cache holding Paris x mobile's list, built at NOW from offsets below 100."""
    cache = ListCache(budget_bytes=10_000)
    _put(cache, "paris", "mobile", _list("a"), built_at={"events": 100}, source=("paris", "mobile"))
    return cache


def test_a_stale_segment_list_is_handed_out_until_it_is_max_age_old() -> None:
    cache = _paris_mobile_at_100()
    kept = cache.segment_list("paris", "mobile", NOW + 500, 1000)
    assert kept is not None
    assert (kept.candidates, kept.stale, kept.built_ms) == (_list("a"), False, NOW)
    cache.note_event("events", 100, "paris", "mobile")
    kept = cache.segment_list("paris", "mobile", NOW + 999, 1000)
    assert kept is not None
    assert (kept.candidates, kept.stale) == (_list("a"), True)  # stale, still young enough
    assert cache.segment_list("paris", "mobile", NOW + 1000, 1000) is None  # too old: a miss
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.invalidations, stats.entries) == (2, 1, 1, 0)


def test_a_list_that_saw_no_event_is_kept_however_old() -> None:
    cache = _paris_mobile_at_100()
    kept = cache.segment_list("paris", "mobile", NOW + 86_400_000, 1000)
    assert kept is not None
    assert not kept.stale


def test_events_of_other_segments_leave_a_list_valid() -> None:
    cache = ListCache(budget_bytes=10_000)
    _put(cache, "paris", "mobile", _list("a"), built_at={"events": 10}, source=("paris", "mobile"))
    cache.note_event("events", 50, "paris", "desktop")
    cache.note_event("events", 51, "london", "mobile")
    cache.note_event("events", 52, None, None)
    assert _fresh(cache, "paris", "mobile") == _list("a")


def test_a_list_from_a_location_roll_up_is_stale_after_any_event_there() -> None:
    cache = ListCache(budget_bytes=10_000)
    _put(cache, "paris", "mobile", _list("a"), built_at={"events": 10}, source=("paris", None))
    cache.note_event("events", 50, "london", "mobile")  # another location
    assert _fresh(cache, "paris", "mobile") == _list("a")
    cache.note_event("events", 51, "paris", "desktop")  # same location, other device
    assert _fresh(cache, "paris", "mobile") is None


def test_a_list_from_a_device_roll_up_is_stale_after_any_event_on_that_device() -> None:
    cache = ListCache(budget_bytes=10_000)
    _put(cache, "lyon", "tablet", _list("a"), built_at={"events": 10}, source=(None, "tablet"))
    cache.note_event("events", 50, "paris", "mobile")
    assert _fresh(cache, "lyon", "tablet") == _list("a")
    cache.note_event("events", 51, "paris", "tablet")
    assert _fresh(cache, "lyon", "tablet") is None


def test_a_list_from_the_global_roll_up_is_stale_after_any_event() -> None:
    cache = ListCache(budget_bytes=10_000)
    _put(cache, None, None, _list("a"), built_at={"events": 10}, source=(None, None))
    _put(cache, "oslo", "tv", _list("b"), built_at={"events": 10}, source=(None, None))
    cache.note_event("events", 10, "paris", "mobile")
    assert _fresh(cache, None, None) is None
    assert _fresh(cache, "oslo", "tv") is None


def test_a_list_built_from_nothing_is_never_stale() -> None:
    cache = ListCache(budget_bytes=10_000)
    _put(cache, "paris", "mobile", _list("a"), built_at={}, source=("paris", "mobile"))
    cache.note_event("events", 10**9, "paris", "mobile")
    assert _fresh(cache, "paris", "mobile") == _list("a")


# -- budget -------------------------------------------------------------------------------


def test_least_recently_used_entries_go_first() -> None:
    cache = ListCache(budget_bytes=3 * _size(1))
    for visitor in ("a", "b", "c"):
        cache.put_visitor(visitor, "m", _list(visitor))
    assert cache.visitor_list("a", "m") is not None  # "a" is now the most recent
    cache.put_visitor("d", "m", _list("d"))
    assert cache.visitor_list("b", "m") is None
    assert all(cache.visitor_list(v, "m") == _list(v) for v in ("a", "c", "d"))
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (3, 3 * _size(1), 1)


def test_a_big_entry_evicts_as_many_as_it_needs() -> None:
    cache = ListCache(budget_bytes=3 * _size(1))
    for visitor in ("a", "b", "c"):
        cache.put_visitor(visitor, "m", _list(visitor))
    cache.put_visitor("big", "m", _list(*"xyz"))  # _size(3) needs two single lists' room
    assert cache.visitor_list("a", "m") is None
    assert cache.visitor_list("b", "m") is None
    assert cache.visitor_list("c", "m") == _list("c")
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (2, _size(1) + _size(3), 2)
    assert stats.bytes <= stats.budget_bytes


def test_an_entry_bigger_than_the_budget_is_not_kept() -> None:
    cache = ListCache(budget_bytes=_size(4))
    cache.put_visitor("small", "m", _list("a"))
    cache.put_visitor("huge", "m", _list(*"abcde"))
    assert cache.visitor_list("huge", "m") is None
    assert cache.visitor_list("small", "m") == _list("a")  # nothing evicted for it
    stats = cache.stats()
    assert (stats.entries, stats.bytes, stats.evictions) == (1, _size(1), 0)


def test_an_unkeepable_put_does_not_leave_the_previous_list_behind() -> None:
    cache = ListCache(budget_bytes=_size(4))
    cache.put_visitor("v1", "m1", _list("old"))
    cache.put_visitor("v1", "m1", _list(*"abcde"))  # too big to keep
    # a get after a put answers with what was put or misses; never the replaced list
    assert cache.visitor_list("v1", "m1") is None


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "get", "invalidate"]),
            st.sampled_from(["a", "b", "c", "d", "e"]),
            st.integers(0, 4),
        ),
        max_size=60,
    ),
    budget=st.integers(_size(4), _size(12)),
)
def test_gets_answer_the_last_put_or_miss_and_bytes_add_up(
    ops: list[tuple[str, str, int]], budget: int
) -> None:
    cache = ListCache(budget_bytes=budget)
    last: dict[str, list[Candidate]] = {}
    for n, (op, visitor, length) in enumerate(ops):
        if op == "put":
            last[visitor] = _list(*(f"{visitor}{n}.{i}" for i in range(length)))
            cache.put_visitor(visitor, "m", last[visitor])
        elif op == "get":
            got = cache.visitor_list(visitor, "m")
            assert got is None or got == last[visitor]
        else:
            cache.invalidate_visitor(visitor)
            last.pop(visitor, None)
        stats = cache.stats()
        assert stats.bytes <= budget
        kept = [v for v in last if cache.visitor_list(v, "m") is not None]
        assert len(kept) == cache.stats().entries
        assert cache.stats().bytes == sum(_size(len(last[v])) for v in kept)


# -- threads ------------------------------------------------------------------------------


def test_concurrent_use_keeps_the_books_straight() -> None:
    cache = ListCache(budget_bytes=20 * _size(2))  # room for 20 of the 40 keys: evictions
    gets_per_thread = [0] * 6
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(worker: int) -> None:
        rng = random.Random(worker)
        try:
            start.wait()
            for step in range(1500):
                visitor = f"v{rng.randrange(40)}"
                roll = rng.random()
                if roll < 0.4:
                    cache.put_visitor(visitor, "m", _list(f"{worker}.{step}", "x"))
                elif roll < 0.8:
                    got = cache.visitor_list(visitor, "m")
                    gets_per_thread[worker] += 1
                    assert got is None or len(got) == 2
                elif roll < 0.9:
                    cache.invalidate_visitor(visitor)
                else:
                    _put(
                        cache,
                        visitor,
                        None,
                        _list("s", "t"),
                        built_at={"e": step},
                        source=(visitor, None),
                    )
                    cache.note_event("e", step, visitor, "mobile")
                    _fresh(cache, visitor, None)
                    gets_per_thread[worker] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = cache.stats()
    assert stats.bytes == stats.entries * _size(2)  # every list here has two candidates
    assert stats.bytes <= stats.budget_bytes
    assert stats.hits + stats.misses == sum(gets_per_thread)


# -- metrics ------------------------------------------------------------------------------


def test_prometheus_series_count_lookups_per_kind_of_list() -> None:
    from hotshelf.monitoring import Metrics
    from hotshelf.recommend._cache import ListCacheCollector

    metrics = Metrics(process=False)
    cache = ListCache(budget_bytes=_size(2) + _size(1))
    ListCacheCollector(cache.stats).register(metrics.registry)
    cache.put_visitor("v1", "m1", _list("a", "b"))
    assert cache.visitor_list("v1", "m1") is not None  # a visitor hit
    assert cache.visitor_list("v2", "m1") is None  # a visitor miss
    assert cache.visitor_list("v1", "m1", count=False) is not None  # precompute: not counted
    assert _fresh(cache, "paris", None) is None  # a segment miss
    _put(cache, "paris", None, _list("c"), built_at={}, source=("paris", None))
    assert _fresh(cache, "paris", None) == _list("c")  # a segment hit
    cache.invalidate_visitor("v1")
    cache.put_visitor("v3", "m1", _list("d", "e"))
    cache.put_visitor("v4", "m1", _list("f", "g"))  # over the budget: paris, then v3 go
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
    }
    lookups = "hotshelf_recommend_list_cache_lookups_total"
    for kind, hits, misses in (("visitor", 1, 1), ("segment", 1, 1)):
        assert got[(lookups, (("kind", kind), ("outcome", "hit")))] == hits
        assert got[(lookups, (("kind", kind), ("outcome", "miss")))] == misses
    assert got[("hotshelf_recommend_list_cache_invalidations_total", ())] == 1
    assert got[("hotshelf_recommend_list_cache_evictions_total", ())] == 2
    assert got[("hotshelf_recommend_list_cache_entries", ())] == 1
    assert got[("hotshelf_recommend_list_cache_bytes", ())] == _size(2)
    assert got[("hotshelf_recommend_list_cache_budget_bytes", ())] == _size(2) + _size(1)
    assert b"hotshelf_recommend_list_cache_lookups_total{" in metrics.render()
