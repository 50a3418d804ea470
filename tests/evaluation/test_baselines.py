"""Every recommender keeps the OfflineRecommender contract; the baselines beat chance.

The contract suite runs against everything ``recommenders_for`` lines up, so a new
contender (the hotshelf router) is held to the same rules as soon as it is added.
"""

from __future__ import annotations

import random

import pytest

from hotshelf.errors import ConflictError
from hotshelf.evaluation import (
    Case,
    Dataset,
    ImplicitALS,
    ItemKNN,
    OfflineRecommender,
    Popularity,
    ShopperType,
    TimeSplit,
    TrainingData,
    build_cases,
    evaluate,
    recommenders_for,
    sample_cases,
    split_by_time,
)
from tests.evaluation.conftest import tiny_dataset, view


class RandomRecommender(OfflineRecommender):
    """The floor every baseline must clear: training items in a seeded random order."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._items: list[str] = []

    def fit(self, train: TrainingData) -> None:
        self._items = sorted(train.catalog())

    def recommend(self, case: Case, k: int) -> list[str]:
        rng = random.Random(f"{self.seed}:{case.visitor}:{case.session}")
        pool = rng.sample(self._items, min(len(self._items), k + len(case.exclude)))
        return [item for item in pool if item not in case.exclude][:k]


@pytest.fixture(scope="module")
def movielens_split(movielens: Dataset) -> TimeSplit:
    return split_by_time(movielens)


@pytest.fixture(scope="module")
def movielens_cases(movielens_split: TimeSplit) -> list[Case]:
    return sample_cases(build_cases(movielens_split), 15, seed=3)


@pytest.fixture(scope="module")
def fitted(movielens: Dataset, movielens_split: TimeSplit) -> dict[str, OfflineRecommender]:
    recommenders = {r.name: r for r in recommenders_for(movielens)}
    for recommender in recommenders.values():
        recommender.fit(movielens_split.train)
    return recommenders


NAMES = ["popularity", "als", "item-knn", "hotshelf router"]


def test_the_line_up_is_the_three_baselines_and_the_router(movielens: Dataset) -> None:
    assert [r.name for r in recommenders_for(movielens)] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_contract_lists_are_short_distinct_and_respect_exclusions(
    name: str, fitted: dict[str, OfflineRecommender], movielens_cases: list[Case]
) -> None:
    recommender = fitted[name]
    for k in (1, 10):
        for case in movielens_cases:
            ranked = recommender.recommend(case, k)
            assert all(isinstance(item, str) for item in ranked)
            assert len(ranked) <= k
            assert len(set(ranked)) == len(ranked)
            assert not set(ranked) & case.exclude
            assert recommender.recommend(case, k) == ranked  # same question, same answer


@pytest.mark.parametrize("name", NAMES)
def test_contract_asking_before_fitting_is_refused(
    name: str, movielens: Dataset, movielens_cases: list[Case]
) -> None:
    (fresh,) = [r for r in recommenders_for(movielens) if r.name == name]
    with pytest.raises(ConflictError, match="fit the"):
        fresh.recommend(movielens_cases[0], 10)


def test_the_baselines_beat_a_random_recommender(movielens: Dataset) -> None:
    line_up = [RandomRecommender(), *recommenders_for(movielens)]
    report = evaluate(movielens, line_up, k=10, max_cases=60, seed=5)
    recall = {r.name: r.mixed.recall for r in report.results}
    ndcg = {r.name: r.mixed.ndcg for r in report.results}
    assert recall["random"] is not None
    assert ndcg["random"] is not None
    for name in NAMES:
        assert (recall[name] or 0) > 3 * recall["random"] + 0.01, recall
        assert (ndcg[name] or 0) > 3 * ndcg["random"] + 0.01, ndcg


def test_popularity_ranks_by_training_count_minus_exclusions() -> None:
    dataset = tiny_dataset(
        view("u", "a", 1), view("v", "a", 2), view("w", "a", 3), view("u", "b", 4),
        view("v", "b", 5), view("u", "c", 6), view("x", "b", 11, "s"), view("x", "e", 12, "s"),
        split_time=10,
    )  # fmt: skip
    split = split_by_time(dataset)
    popularity = Popularity()
    popularity.fit(split.train)
    by_type = {c.shopper: c for c in build_cases(split)}
    assert popularity.recommend(by_type[ShopperType.NEW], 10) == ["a", "b", "c"]
    assert popularity.recommend(by_type[ShopperType.BROWSING], 2) == ["a", "c"]  # b: context


def test_als_has_nothing_for_a_stranger_but_folds_in_a_session(
    fitted: dict[str, OfflineRecommender], movielens_split: TimeSplit
) -> None:
    cases = build_cases(movielens_split)
    stranger = next(c for c in cases if c.shopper is ShopperType.NEW)
    assert fitted["als"].recommend(stranger, 10) == []
    assert fitted["item-knn"].recommend(stranger, 10) == []
    anonymous = next(c for c in cases if c.shopper is ShopperType.BROWSING and not c.history)
    assert len(fitted["als"].recommend(anonymous, 10)) == 10
    assert fitted["item-knn"].recommend(anonymous, 10)
    regular = next(c for c in cases if c.shopper is ShopperType.RETURNING)
    assert len(fitted["als"].recommend(regular, 10)) == 10


def test_item_knn_answers_with_neighbours_of_the_context() -> None:
    # a and b are always taken together, c and d together: a's neighbour is b
    interactions = [view(f"u{n}", item, n) for n in range(6) for item in ("a", "b")]
    interactions += [view(f"w{n}", item, n) for n in range(6) for item in ("c", "d")]
    interactions += [view("s", "a", 20, "s1"), view("s", "c", 21, "s1"), view("s", "d", 22, "s1")]
    split = split_by_time(tiny_dataset(*interactions, split_time=10))
    knn, als = ItemKNN(), ImplicitALS(seed=1)
    knn.fit(split.train)
    als.fit(split.train)
    (browsing,) = [c for c in build_cases(split) if c.shopper is ShopperType.BROWSING]
    assert browsing.context_items == ("a", "c")
    assert set(knn.recommend(browsing, 2)) == {"b", "d"}
    assert set(als.recommend(browsing, 2)) == {"b", "d"}
