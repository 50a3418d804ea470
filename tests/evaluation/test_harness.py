"""The harness: every recommender on the same cases, scored per shopper type and mixed."""

from __future__ import annotations

import pytest

from hotshelf.errors import ValidationError
from hotshelf.evaluation import (
    Case,
    Dataset,
    OfflineRecommender,
    Popularity,
    ShopperType,
    TrainingData,
    evaluate,
)
from tests.evaluation.conftest import tiny_dataset, view


@pytest.fixture
def shop() -> Dataset:
    """Before 10: a twice, b and c once. After: u returns for c, n is new (z is a new item,
    a is not), s browses b then c."""
    return tiny_dataset(
        view("u", "a", 1), view("u", "b", 2), view("v", "a", 3), view("w", "c", 4),
        view("u", "c", 11), view("n", "z", 12), view("n", "a", 12.5),
        view("s", "b", 13, "s1"), view("s", "c", 14, "s1"),
        split_time=10,
    )  # fmt: skip


class Broken(OfflineRecommender):
    """Breaks one rule of the interface, chosen by ``how``."""

    def __init__(self, how: str) -> None:
        self.how = how

    @property
    def name(self) -> str:
        return f"broken-{self.how}"

    def fit(self, train: TrainingData) -> None:
        self.items = sorted(train.catalog())

    def recommend(self, case: Case, k: int) -> list[str]:
        if self.how == "long":
            return [*self.items, "x", "y", "w"][: k + 1]
        if self.how == "twice":
            return [self.items[0], self.items[0]]
        return sorted(case.exclude)[:k]


def test_scores_per_shopper_type_and_mixed_by_hand(shop: Dataset) -> None:
    calls: list[tuple[str, int, int]] = []
    report = evaluate(
        shop, [Popularity()], k=1, max_cases=None, progress=lambda *a: calls.append(a)
    )
    assert (report.train_interactions, report.test_interactions, report.train_items) == (4, 5, 3)
    shoppers = report.shoppers
    assert {t: s.cases for t, s in shoppers.items()} == {"new": 2, "returning": 1, "browsing": 1}
    # the new shoppers' truth: z, a (n) and b, c (s); only z was never seen in training
    assert shoppers[ShopperType.NEW].unseen_truth == 0.25
    assert shoppers[ShopperType.RETURNING].unseen_truth == 0.0
    (result,) = report.results
    # popularity answers "a" to everyone; only n took it (recall 1/min(2, 1))
    assert result.by_type[ShopperType.NEW].recall == 0.5
    assert result.by_type[ShopperType.RETURNING].recall == 0.0
    assert result.by_type[ShopperType.BROWSING].recall == 0.0
    assert result.mixed.recall == 0.25
    assert result.mixed.ndcg == 0.25
    assert result.mixed.coverage == pytest.approx(1 / 3)
    assert calls[-1] == ("tiny: popularity", 4, 4)


def test_an_empty_shopper_type_scores_none(shop: Dataset) -> None:
    no_sessions = tiny_dataset(*(i for i in shop.interactions if i.session is None), split_time=10)
    report = evaluate(no_sessions, [Popularity()], k=10)
    browsing = report.results[0].by_type[ShopperType.BROWSING]
    assert (browsing.cases, browsing.recall, browsing.ndcg) == (0, None, None)
    assert report.shoppers[ShopperType.BROWSING].unseen_truth is None


@pytest.mark.parametrize(
    ("how", "problem"),
    [("long", "returned 3 items for k=2"), ("twice", "returned an item twice"),
     ("excluded", "returned excluded item")],
)  # fmt: skip
def test_a_recommender_breaking_the_interface_is_named(
    shop: Dataset, how: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=f"'broken-{how}' {problem}"):
        evaluate(shop, [Popularity(), Broken(how)], k=2)


def test_names_must_be_unique_and_k_positive(shop: Dataset) -> None:
    with pytest.raises(ValidationError, match="names must be unique"):
        evaluate(shop, [Popularity(), Popularity()])
    with pytest.raises(ValidationError, match="k must be at least 1"):
        evaluate(shop, [Popularity()], k=0)
