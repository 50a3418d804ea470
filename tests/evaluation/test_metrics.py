"""Recall@k, NDCG@k and coverage: hand-computed cases and the invariants they must keep."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.errors import ValidationError
from hotshelf.evaluation import catalog_coverage, ndcg_at_k, recall_at_k, score_lists

ITEMS = st.sampled_from([f"i{n}" for n in range(30)])


def test_recall_and_ndcg_by_hand() -> None:
    # hits at ranks 1 and 3 of 3; the ideal list has both at ranks 1 and 2
    assert recall_at_k(["a", "x", "b"], {"a", "b"}, 3) == 1.0
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, 3) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # three relevant items but room for two: recall divides by min(|truth|, k)
    assert recall_at_k(["x", "a"], {"a", "b", "c"}, 2) == 0.5
    assert ndcg_at_k(["x", "a"], {"a", "b", "c"}, 2) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )
    # only the first k count
    assert recall_at_k(["x", "y", "a"], {"a"}, 2) == 0.0
    assert ndcg_at_k([], {"a"}, 10) == 0.0


def test_an_item_listed_twice_counts_once() -> None:
    assert recall_at_k(["a", "a"], {"a", "b"}, 2) == 0.5
    assert ndcg_at_k(["a", "a", "b"], {"a", "b"}, 3) == pytest.approx(1.0)


def test_coverage_counts_catalog_items_shown_at_least_once() -> None:
    assert catalog_coverage([["a", "b"], ["b", "z"]], {"a", "b", "c", "d"}) == 0.5


def test_score_lists_averages_over_cases_and_reports_nothing_without_cases() -> None:
    scores = score_lists([["a"], ["x"]], [{"a"}, {"b"}], {"a", "b", "x"}, 10)
    assert (scores.cases, scores.recall, scores.ndcg) == (2, 0.5, 0.5)
    assert scores.coverage == pytest.approx(2 / 3)
    empty = score_lists([], [], {"a"}, 10)
    assert (empty.cases, empty.recall, empty.ndcg, empty.coverage) == (0, None, None, None)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="k must be at least 1"):
        recall_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValidationError, match="non-empty truth"):
        ndcg_at_k(["a"], set(), 10)
    with pytest.raises(ValidationError, match="non-empty catalog"):
        catalog_coverage([["a"]], set())
    with pytest.raises(ValidationError, match="2 lists but 1 truths"):
        score_lists([["a"], ["b"]], [{"a"}], {"a"}, 10)


@settings(max_examples=200, deadline=None)
@given(
    ranked=st.lists(ITEMS, max_size=15),
    truth=st.sets(ITEMS, min_size=1, max_size=12),
    k=st.integers(1, 12),
)
def test_scores_lie_between_zero_and_one(ranked: list[str], truth: set[str], k: int) -> None:
    assert 0.0 <= recall_at_k(ranked, truth, k) <= 1.0
    assert 0.0 <= ndcg_at_k(ranked, truth, k) <= 1.0 + 1e-12
    assert (recall_at_k(ranked, truth, k) == 0) == (ndcg_at_k(ranked, truth, k) == 0)


@settings(max_examples=200, deadline=None)
@given(
    truth=st.lists(ITEMS, min_size=1, max_size=12, unique=True),
    others=st.lists(ITEMS, max_size=10, unique=True),
    k=st.integers(1, 12),
)
def test_a_perfect_ranking_scores_one(truth: list[str], others: list[str], k: int) -> None:
    ranked = truth + [item for item in others if item not in truth]
    assert recall_at_k(ranked, set(truth), k) == 1.0
    assert ndcg_at_k(ranked, set(truth), k) == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(
    truth=st.lists(ITEMS, min_size=2, max_size=8, unique=True),
    misses=st.lists(ITEMS, min_size=1, max_size=8, unique=True),
)
def test_moving_a_hit_down_never_raises_ndcg(truth: list[str], misses: list[str]) -> None:
    misses = [m for m in misses if m not in truth] or ["none-of-them"]
    early = truth[:1] + misses + truth[1:]
    late = misses + truth
    k = len(early)
    assert ndcg_at_k(late, set(truth), k) <= ndcg_at_k(early, set(truth), k)
    assert recall_at_k(late, set(truth), k) == recall_at_k(early, set(truth), k)
