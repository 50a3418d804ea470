"""The router offline: routes by shopper type, the serving code's own pieces, and (the
issue's bar) a mixed population served better than by any single baseline."""

from __future__ import annotations

import pytest

from hotshelf.config import load_config
from hotshelf.evaluation import Dataset, HotshelfRouter, evaluate, recommenders_for
from hotshelf.evaluation._cases import ShopperType, build_cases
from hotshelf.evaluation._split import split_by_time
from tests.evaluation.conftest import tiny_dataset, view


def test_each_shopper_type_gets_its_route() -> None:
    shop = tiny_dataset(
        view("u", "a", 1, "s1"), view("u", "b", 2, "s1"), view("v", "a", 3, "s2"),
        view("v", "b", 4, "s2"), view("v", "c", 5, "s2"), view("w", "c", 6, "s3"),
        view("w", "d", 7, "s3"), view("u", "c", 11, "s4"), view("x", "c", 12, "s5"),
        view("x", "d", 13, "s5"), view("x", "a", 14, "s5"), view("x", "b", 15, "s5"),
        split_time=10,
    )  # fmt: skip
    split = split_by_time(shop)
    router = HotshelfRouter()
    router.fit(split.train)
    cases = {c.shopper: c for c in build_cases(split)}
    new = router.recommend(cases[ShopperType.NEW], 3)
    assert new[0] in {"a", "b", "c"}  # the most popular: views of a, b and c tie at two
    browsing = cases[ShopperType.BROWSING]
    answer = router.recommend(browsing, 3)
    assert not set(answer) & browsing.exclude
    assert answer  # co-viewed with the session so far, backed by the popular items


def test_blend_weights_change_the_answer(diginetica: Dataset) -> None:
    browsing_only = load_config(
        overrides=["recommend.blend_weights={browsing=1.0,personal=0.0,generic=0.0}"],
        environ={},
    )
    generic_only = load_config(
        overrides=["recommend.blend_weights={browsing=0.0,personal=0.0,generic=1.0}"],
        environ={},
    )
    report = evaluate(diginetica, [HotshelfRouter(browsing_only)], max_cases=100, seed=1)
    popular = evaluate(diginetica, [HotshelfRouter(generic_only)], max_cases=100, seed=1)
    browsing = report.results[0].by_type[ShopperType.BROWSING].recall
    generic = popular.results[0].by_type[ShopperType.BROWSING].recall
    assert browsing is not None
    assert generic is not None
    assert browsing > generic  # sessions continue with what is co-viewed, not what is popular


@pytest.mark.parametrize("name", ["diginetica", "movielens"])
def test_the_router_beats_every_single_baseline_on_the_mixed_population(
    name: str, request: pytest.FixtureRequest
) -> None:
    dataset: Dataset = request.getfixturevalue(name)
    report = evaluate(dataset, recommenders_for(dataset), max_cases=300, seed=0)
    mixed = {r.name: r.mixed.recall or 0.0 for r in report.results}
    router = mixed.pop("hotshelf router")
    assert all(router > baseline for baseline in mixed.values()), (router, mixed)
