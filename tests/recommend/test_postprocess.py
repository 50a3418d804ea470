"""After blending: filter validation, eligibility (filters and exclusions always hold), MMR."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.errors import ValidationError
from hotshelf.events import Availability, Item
from hotshelf.recommend._blend import Blended
from hotshelf.recommend._context import Filters, Route
from hotshelf.recommend._postprocess import Eligibility, check_filters, diversify


def _item(
    item_id: str = "i1",
    category: list[str] | None = None,
    price: float | None = 10.0,
    availability: Availability = Availability.IN_STOCK,
) -> Item:
    return Item(
        item_id=item_id,
        title=f"title {item_id}",
        category=category if category is not None else ["Home", "Kitchen"],
        price=price,
        availability=availability,
    )


# -- check_filters ------------------------------------------------------------------------


def _paths(filters: Filters, max_categories: int = 3) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        check_filters(filters, max_categories)
    assert raised.value.status == 422
    return [problem.path for problem in raised.value.problems]


@pytest.mark.parametrize(
    "filters",
    [
        None,
        Filters(),
        Filters(min_price=5.0, max_price=5.0),
        Filters(min_price=5.0),
        Filters(max_price=0.0),
        Filters(include_categories=["a", "b", "c"], exclude_categories=["d", "e", "f"]),
    ],
)
def test_satisfiable_filters_pass(filters: Filters | None) -> None:
    check_filters(filters, max_categories=3)


def test_min_above_max_names_min_price() -> None:
    assert _paths(Filters(min_price=20.0, max_price=10.0)) == ["$.filters.min_price"]


@pytest.mark.parametrize("field", ["include_categories", "exclude_categories"])
def test_too_many_categories_name_their_field(field: str) -> None:
    filters = Filters(**{field: ["a", "b", "c", "d"]})
    assert _paths(filters) == [f"$.filters.{field}"]


def test_every_problem_is_reported_at_once() -> None:
    filters = Filters(
        include_categories=["a"] * 4, exclude_categories=["b"] * 4, min_price=2.0, max_price=1.0
    )
    assert sorted(_paths(filters)) == [
        "$.filters.exclude_categories",
        "$.filters.include_categories",
        "$.filters.min_price",
    ]


# -- Eligibility --------------------------------------------------------------------------


def test_unknown_item_is_not_allowed() -> None:
    assert not Eligibility(None, excluded=set()).allows(None)


def test_excluded_ids_are_not_allowed() -> None:
    eligibility = Eligibility(None, excluded={"bought", "viewing"})
    assert not eligibility.allows(_item("bought"))
    assert not eligibility.allows(_item("viewing"))
    assert eligibility.allows(_item("other"))


@pytest.mark.parametrize(
    ("availability", "allowed"),
    [
        (Availability.IN_STOCK, True),
        (Availability.PREORDER, True),
        (Availability.OUT_OF_STOCK, False),
        (Availability.DISCONTINUED, False),
    ],
)
def test_availability(availability: Availability, allowed: bool) -> None:
    assert Eligibility(None, excluded=()).allows(_item(availability=availability)) is allowed


@pytest.mark.parametrize(
    ("include", "allowed"),
    [
        (["Home"], True),
        (["kitchen"], True),  # any level of the path, any case
        (["HOME", "Toys"], True),  # one of them is enough
        (["Toys"], False),
        (["Kitch"], False),  # whole names, not prefixes
        ([], True),  # an empty list is no filter, not "nothing"
    ],
)
def test_include_categories(include: list[str], allowed: bool) -> None:
    eligibility = Eligibility(Filters(include_categories=include), excluded=())
    assert eligibility.allows(_item(category=["Home", "Kitchen"])) is allowed


@pytest.mark.parametrize(
    ("exclude", "allowed"),
    [(["home"], False), (["KITCHEN"], False), (["Toys", "kitchen"], False), (["Toys"], True)],
)
def test_exclude_categories(exclude: list[str], allowed: bool) -> None:
    eligibility = Eligibility(Filters(exclude_categories=exclude), excluded=())
    assert eligibility.allows(_item(category=["Home", "Kitchen"])) is allowed


def test_exclusion_wins_over_inclusion() -> None:
    filters = Filters(include_categories=["home"], exclude_categories=["kitchen"])
    eligibility = Eligibility(filters, excluded=())
    assert not eligibility.allows(_item(category=["Home", "Kitchen"]))
    assert eligibility.allows(_item(category=["Home", "Garden"]))


def test_an_item_without_category_fails_an_include_filter_only() -> None:
    uncategorised = _item(category=[])
    assert not Eligibility(Filters(include_categories=["home"]), excluded=()).allows(uncategorised)
    assert Eligibility(Filters(exclude_categories=["home"]), excluded=()).allows(uncategorised)


@pytest.mark.parametrize(
    ("price", "allowed"),
    [(4.99, False), (5.0, True), (12.5, True), (20.0, True), (20.01, False), (None, False)],
)
def test_price_range_is_inclusive_and_needs_a_price(price: float | None, allowed: bool) -> None:
    eligibility = Eligibility(Filters(min_price=5.0, max_price=20.0), excluded=())
    assert eligibility.allows(_item(price=price)) is allowed


def test_one_sided_price_filters() -> None:
    at_least = Eligibility(Filters(min_price=5.0), excluded=())
    at_most = Eligibility(Filters(max_price=5.0), excluded=())
    assert at_least.allows(_item(price=100.0))
    assert not at_least.allows(_item(price=1.0))
    assert at_most.allows(_item(price=0.0))
    assert not at_most.allows(_item(price=5.5))
    assert not at_least.allows(_item(price=None))
    assert not at_most.allows(_item(price=None))


def test_without_filters_an_item_without_price_is_allowed() -> None:
    assert Eligibility(Filters(), excluded=()).allows(_item(price=None, category=[]))


_names = st.sampled_from(["Home", "home", "HOME", "Kitchen", "kitchen", "Toys", "Books", "Ö"])
_prices = st.none() | st.floats(0.0, 100.0)
_items = st.builds(
    _item,
    item_id=st.sampled_from(["a", "b", "c", "d"]),
    category=st.lists(_names, max_size=3),
    price=_prices,
    availability=st.sampled_from(list(Availability)),
)
_filters = st.none() | st.builds(
    Filters,
    include_categories=st.none() | st.lists(_names, max_size=3),
    exclude_categories=st.none() | st.lists(_names, max_size=3),
    min_price=_prices,
    max_price=_prices,
)


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(_items | st.none(), max_size=8),
    filters=_filters,
    excluded=st.sets(st.sampled_from(["a", "b", "c", "d"])),
)
def test_filters_and_exclusions_always_hold(
    items: list[Item | None], filters: Filters | None, excluded: set[str]
) -> None:
    eligibility = Eligibility(filters, excluded)
    for item in items:
        if not eligibility.allows(item):
            continue
        assert item is not None
        assert item.item_id not in excluded
        assert item.availability in {Availability.IN_STOCK, Availability.PREORDER}
        if filters is None:
            continue
        path = {level.lower() for level in item.category}
        if filters.include_categories:  # an empty list is no filter
            assert path & {name.lower() for name in filters.include_categories}
        if filters.exclude_categories is not None:
            assert not path & {name.lower() for name in filters.exclude_categories}
        if filters.min_price is not None:
            assert item.price is not None
            assert item.price >= filters.min_price
        if filters.max_price is not None:
            assert item.price is not None
            assert item.price <= filters.max_price


@settings(max_examples=50, deadline=None)
@given(items=st.lists(_items, max_size=8))
def test_without_filters_or_exclusions_every_showable_item_is_allowed(items: list[Item]) -> None:
    eligibility = Eligibility(None, excluded=())
    for item in items:
        showable = item.availability in {Availability.IN_STOCK, Availability.PREORDER}
        assert eligibility.allows(item) is showable


# -- diversify ----------------------------------------------------------------------------


def _ranked(n: int) -> list[Blended]:
    """``n`` candidates, best first, with scores 1.0, 0.9, ..."""
    return [Blended(f"c{i}", 1.0 - 0.1 * i, Route.GENERIC, "trending") for i in range(n)]


def _unit(*rows: list[float]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


# Three near-duplicates (one direction) ahead of two distinct items.
_DUPLICATED = _unit([1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1])


def _ids(chosen: list[Blended]) -> list[str]:
    return [c.item_id for c in chosen]


@pytest.mark.parametrize("k", [0, 1, 3, 5, 9])
def test_zero_diversity_keeps_the_top_k(k: int) -> None:
    candidates = _ranked(5)
    assert diversify(candidates, k, 0.0, vectors=_DUPLICATED) == candidates[:k]


def test_without_vectors_or_groups_the_order_stands() -> None:
    candidates = _ranked(5)
    assert diversify(candidates, 4, 0.8) == candidates[:4]


def test_duplicates_are_spread_out() -> None:
    candidates = _ranked(5)
    assert _ids(diversify(candidates, 3, 0.0, vectors=_DUPLICATED)) == ["c0", "c1", "c2"]
    assert _ids(diversify(candidates, 3, 0.5, vectors=_DUPLICATED)) == ["c0", "c3", "c4"]


def test_more_diversity_never_picks_more_duplicates() -> None:
    candidates = _ranked(5)
    duplicates = [
        len({"c0", "c1", "c2"} & set(_ids(diversify(candidates, 3, d, vectors=_DUPLICATED))))
        for d in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
    ]
    assert duplicates == sorted(duplicates, reverse=True)
    assert duplicates[0] == 3
    assert duplicates[-1] == 1


def test_groups_stand_in_for_missing_vectors() -> None:
    candidates = _ranked(5)
    groups = ["home", "home", "home", "toys", "books"]
    assert _ids(diversify(candidates, 3, 0.5, groups=groups)) == ["c0", "c3", "c4"]
    # zero rows mean "no vector": those items compare by group instead
    no_vectors = np.zeros((5, 3), dtype=np.float32)
    chosen = diversify(candidates, 3, 0.5, vectors=no_vectors, groups=groups)
    assert _ids(chosen) == ["c0", "c3", "c4"]


def test_unknown_groups_are_not_alike() -> None:
    candidates = _ranked(4)
    assert diversify(candidates, 3, 0.5, groups=[None, None, None, None]) == candidates[:3]


def test_vectors_take_precedence_over_groups() -> None:
    candidates = _ranked(3)
    vectors = _unit([1, 0], [0, 1], [1, 0])
    # same group but orthogonal vectors: c1 is not a duplicate of c0; c2 is
    chosen = diversify(candidates, 2, 0.5, vectors=vectors, groups=["home", "home", "toys"])
    assert _ids(chosen) == ["c0", "c1"]


def test_single_and_empty_inputs() -> None:
    assert diversify([], 3, 0.5) == []
    one = _ranked(1)
    assert diversify(one, 3, 0.5, vectors=_unit([1, 0])) == one


@st.composite
def _pools(draw: st.DrawFn) -> tuple[list[Blended], np.ndarray, list[str | None]]:
    scores = draw(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=12))
    scores.sort(reverse=True)
    candidates = [Blended(f"c{i}", s, Route.BROWSING, "similar") for i, s in enumerate(scores)]
    coordinate = st.sampled_from([-1.0, 0.0, 0.5, 1.0])
    rows = draw(st.lists(st.lists(coordinate, min_size=3, max_size=3), min_size=len(scores)))
    vectors = _unit(*rows[: len(scores)])
    groups = draw(st.lists(st.sampled_from([None, "home", "toys"]), min_size=len(scores)))
    return candidates, vectors, groups[: len(scores)]


@settings(max_examples=80, deadline=None)
@given(
    pool=_pools(),
    k=st.integers(1, 14),
    diversity=st.floats(0.0, 1.0),
    use_vectors=st.booleans(),
)
def test_diversified_lists_are_short_distinct_and_led_by_the_best(
    pool: tuple[list[Blended], np.ndarray, list[str | None]],
    k: int,
    diversity: float,
    use_vectors: bool,
) -> None:
    candidates, vectors, groups = pool
    chosen = diversify(
        candidates, k, diversity, vectors=vectors if use_vectors else None, groups=groups
    )
    ids = _ids(chosen)
    assert len(ids) == min(k, len(candidates))
    assert len(set(ids)) == len(ids)
    assert set(ids) <= set(_ids(candidates))
    assert chosen[0] is candidates[0]
    if diversity == 0:
        assert chosen == candidates[:k]
