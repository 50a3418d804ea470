"""Weighted reciprocal-rank fusion: scores by hand, credit, ties, and the sum formula."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.recommend._blend import (
    FUSION_OFFSET,
    SHARE_UNITS,
    Blended,
    Candidate,
    blend,
    fuse,
)
from hotshelf.recommend._context import Route


def _ranked(*ids: str, kind: str = "k", because: str | None = None) -> list[Candidate]:
    # Source scores are deliberately on odd scales: fusion must look only at ranks.
    return [Candidate(item, 1000.0 - 7 * i, kind, because) for i, item in enumerate(ids)]


def _share(weight: float, rank: int) -> float:
    # as the fusion counts it: a whole multiple of 2^-52 (two weights an ulp apart can
    # give the same share, a tie that the earlier list wins)
    return round(weight * SHARE_UNITS / (FUSION_OFFSET + rank)) / SHARE_UNITS


def test_scores_by_hand() -> None:
    fused = fuse([(1.0, _ranked("a", "b", kind="x")), (2.0, _ranked("b", "c", kind="y"))])
    assert [c.item_id for c in fused] == ["b", "c", "a"]
    scores = {c.item_id: c.score for c in fused}
    assert scores["a"] == pytest.approx(1 / 11)
    assert scores["b"] == pytest.approx(1 / 12 + 2 / 11)
    assert scores["c"] == pytest.approx(2 / 12)


def test_only_ranks_matter_not_source_scores() -> None:
    low = [Candidate("a", 0.001, "k"), Candidate("b", 0.0001, "k")]
    high = [Candidate("a", 5e6, "k"), Candidate("b", -3.0, "k")]
    assert fuse([(1.0, low)]) == fuse([(1.0, high)])


def test_ties_break_on_item_id() -> None:
    fused = fuse([(1.0, _ranked("b")), (1.0, _ranked("a"))])
    assert [c.item_id for c in fused] == ["a", "b"]
    assert fused[0].score == fused[1].score


def test_equal_sums_tie_whatever_order_the_shares_are_added_in() -> None:
    # "a" sits at ranks 1, 4, 2 and "b" at 4, 2, 1: both earn 1/11 + 1/12 + 1/14, a tie
    # that must break on the item id, not on floating-point summation order.
    lists = [
        (1.0, _ranked("a", "x", "y", "b")),
        (1.0, _ranked("x", "b", "y", "a")),
        (1.0, _ranked("b", "a")),
    ]
    fused = [c for c in fuse(lists) if c.item_id in {"a", "b"}]
    assert fused[0].score == pytest.approx(fused[1].score)
    assert [c.item_id for c in fused] == ["a", "b"]


def test_credit_goes_to_the_largest_share() -> None:
    # "b" is rank 2 of the first list (1/12) but rank 1 of the second (2/11).
    fused = fuse(
        [
            (1.0, _ranked("a", "b", kind="trending")),
            (2.0, _ranked("b", kind="similar", because="seed")),
        ]
    )
    by_id = {c.item_id: c for c in fused}
    assert (by_id["b"].kind, by_id["b"].because) == ("similar", "seed")
    assert (by_id["a"].kind, by_id["a"].because) == ("trending", None)


def test_credit_weighs_weight_against_rank() -> None:
    # rank 1 at weight 1 (1/11) beats rank 5 at weight 1.2 (1.2/15 = 0.08)
    fused = fuse(
        [
            (1.2, _ranked("p", "q", "r", "s", "a", kind="heavy")),
            (1.0, _ranked("a", kind="light")),
        ]
    )
    assert {c.item_id: c.kind for c in fused}["a"] == "light"


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_non_positive_weights_are_ignored(weight: float) -> None:
    fused = fuse([(1.0, _ranked("a", "b")), (weight, _ranked("b", "z", kind="ignored"))])
    assert [c.item_id for c in fused] == ["a", "b"]
    assert fused[1].score == pytest.approx(1 / 12)
    assert all(c.kind == "k" for c in fused)


def test_each_item_appears_once() -> None:
    fused = fuse([(1.0, _ranked("a", "b", "c")), (1.0, _ranked("c", "a")), (0.5, _ranked("a"))])
    ids = [c.item_id for c in fused]
    assert sorted(ids) == ["a", "b", "c"]


def test_empty_inputs() -> None:
    assert fuse([]) == []
    assert fuse([(1.0, [])]) == []
    assert list(blend({}, {"generic": 1.0})) == []
    assert list(blend({Route.GENERIC: _ranked("a")}, {})) == []


def test_is_deterministic_and_independent_of_list_order() -> None:
    lists = [
        (1.0, _ranked("a", "b", "c", kind="one")),
        (0.7, _ranked("c", "d", kind="two")),
        (1.5, _ranked("e", "a", "f", kind="three")),
    ]
    first = fuse(lists)
    assert fuse(lists) == first
    assert fuse(list(reversed(lists))) == first
    assert fuse([lists[1], lists[2], lists[0]]) == first


def test_blend_weights_routes_by_name_and_credits_the_route() -> None:
    routes = {
        Route.GENERIC: _ranked("a", "b", kind="trending"),
        Route.PERSONAL: _ranked("b", "c", kind="collaborative"),
        Route.BROWSING: _ranked("a", kind="similar", because="seed"),
    }
    blended = list(blend(routes, {"generic": 1.0, "personal": 3.0}))  # browsing: no weight
    assert blended == [
        Blended("b", pytest.approx(1 / 12 + 3 / 11), Route.PERSONAL, "collaborative"),
        Blended("c", pytest.approx(3 / 12), Route.PERSONAL, "collaborative"),
        Blended("a", pytest.approx(1 / 11), Route.GENERIC, "trending"),
    ]


def test_blend_does_not_depend_on_route_order() -> None:
    routes = {
        Route.GENERIC: _ranked("a", "b", "c", kind="trending"),
        Route.PERSONAL: _ranked("c", "d", kind="collaborative"),
        Route.BROWSING: _ranked("d", "a", kind="similar", because="seed"),
    }
    weights = {"generic": 1.0, "personal": 0.8, "browsing": 1.3}
    assert list(blend(dict(reversed(routes.items())), weights)) == list(blend(routes, weights))


# -- properties -------------------------------------------------------------------------

_ids = st.lists(st.sampled_from([f"i{n}" for n in range(12)]), unique=True, max_size=10)
_weights = st.one_of(st.sampled_from([0.0, -1.0]), st.floats(0.05, 5.0))
_lists = st.lists(st.tuples(_weights, _ids), max_size=5)


def _inputs(raw: list[tuple[float, list[str]]]) -> list[tuple[float, list[Candidate]]]:
    # kind names the list, so credit can be checked against it
    return [(w, _ranked(*ids, kind=f"list{n}")) for n, (w, ids) in enumerate(raw)]


def _shares(raw: list[tuple[float, list[str]]]) -> dict[str, list[tuple[float, str]]]:
    out: dict[str, list[tuple[float, str]]] = {}
    for n, (weight, ids) in enumerate(raw):
        if weight > 0:
            for rank, item in enumerate(ids, start=1):
                out.setdefault(item, []).append((_share(weight, rank), f"list{n}"))
    return out


@settings(max_examples=100, deadline=None)
@given(raw=_lists)
def test_fusion_follows_the_sum_formula(raw: list[tuple[float, list[str]]]) -> None:
    fused = fuse(_inputs(raw))
    shares = _shares(raw)
    assert sorted(c.item_id for c in fused) == sorted(shares)
    for candidate in fused:
        mine = shares[candidate.item_id]
        assert candidate.score == pytest.approx(math.fsum(s for s, _ in mine), rel=1e-12)
        best = max(s for s, _ in mine)
        assert candidate.kind in {label for s, label in mine if s == best}
    for before, after in itertools.pairwise(fused):
        assert (-before.score, before.item_id) < (-after.score, after.item_id)


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(st.tuples(st.sampled_from([1.0, 0.5, 0.25]), _ids), max_size=6),
    limit=st.integers(1, 14),
)
def test_a_limited_fusion_is_the_head_of_the_whole_one(
    raw: list[tuple[float, list[str]]], limit: int
) -> None:
    # few weights and short lists: many equal totals, so the cut often falls in a tie
    whole = fuse(_inputs(raw))
    assert fuse(_inputs(raw), limit) == whole[:limit]


@settings(max_examples=60, deadline=None)
@given(raw=_lists, data=st.data())
def test_fusion_does_not_depend_on_list_order(
    raw: list[tuple[float, list[str]]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(_inputs(raw)))
    fused = {c.item_id: c for c in fuse(_inputs(raw))}
    again = {c.item_id: c for c in fuse(shuffled)}
    assert again.keys() == fused.keys()
    shares = _shares(raw)
    for item, candidate in again.items():
        assert candidate.score == pytest.approx(fused[item].score, rel=1e-12)
        best = sorted((s for s, _ in shares[item]), reverse=True)
        if len(best) == 1 or best[0] > best[1]:  # a unique largest share: same credit
            assert candidate.kind == fused[item].kind


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcdefghij"), max_size=30),
    st.sampled_from([1.0, 0.7, 0.35, 1e-12]),
    st.none() | st.integers(1, 12),
)
def test_one_list_keeps_its_order_as_the_general_fusion_would(
    ids: list[str], weight: float, limit: int | None
) -> None:
    # one list (alone, or beside an empty one) ranks as a sort of its shares by
    # (-share, item id) does, a repeat dropped, cut to the limit
    one = fuse([(weight, _ranked(*ids))], limit)
    beside_empty = fuse([(weight, _ranked(*ids)), (1.0, [])], limit)
    first = list(dict.fromkeys(ids))
    shares = {item: weight / (FUSION_OFFSET + ids.index(item) + 1) for item in first}
    expected = sorted(first, key=lambda item: (-shares[item], item))[:limit]
    assert [c.item_id for c in one] == [c.item_id for c in beside_empty] == expected
    for candidate in one:
        assert candidate.score == pytest.approx(shares[candidate.item_id])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from("abcdefghij"), max_size=30),
    st.sampled_from([1.0, 0.7, 0.35, 1e-12, 1e-300]),
    st.sampled_from(list(Route)),
)
def test_a_blend_of_one_route_is_that_route_fused_alone(
    ids: list[str], weight: float, route: Route
) -> None:
    # one route with candidates (a new visitor's generic list) takes a shortcut: the
    # same order, scores and credit as the general fusion, repeats and ties included
    # (a weight so small that shares round to equal ranks breaks ties on the item id)
    routes = {route: _ranked(*ids, kind="kind")}
    others = {other: [] for other in Route if other is not route}
    weights = {**{other.value: 1.0 for other in Route}, route.value: weight}
    blended = list(blend({**routes, **others}, weights))
    general = fuse([(weight, routes[route])])
    assert [b.item_id for b in blended] == [c.item_id for c in general]
    assert [b.score for b in blended] == [c.score for c in general]
    assert {b.route for b in blended} <= {route}
    assert [b.kind for b in blended] == [c.kind for c in general]
