"""One evaluation run: split a dataset, build its cases, fit and score every recommender.

Every recommender answers the same cases from the same training data in one run, so
their scores compare side by side; scores are given per shopper type and for the
mixed population (all cases pooled), which is what a store actually serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import msgspec

from hotshelf.errors import ValidationError
from hotshelf.evaluation._baselines import ImplicitALS, ItemKNN, Popularity
from hotshelf.evaluation._cases import CONTEXT_ITEMS, Case, ShopperType, build_cases, sample_cases
from hotshelf.evaluation._dataset import Dataset
from hotshelf.evaluation._metrics import Scores, score_lists
from hotshelf.evaluation._recommender import OfflineRecommender
from hotshelf.evaluation._router import HotshelfRouter
from hotshelf.evaluation._split import TrainingData, split_by_time

__all__ = [
    "DEFAULT_MAX_CASES",
    "DatasetReport",
    "ProgressCallback",
    "RecommenderResult",
    "ShopperSummary",
    "evaluate",
    "recommenders_for",
]

# Cases per shopper type and dataset: all three datasets evaluate in about a minute.
DEFAULT_MAX_CASES = 500

# (what is running, cases answered, cases in all)
ProgressCallback = Callable[[str, int, int], None]


def recommenders_for(dataset: Dataset, *, seed: int = 0) -> list[OfflineRecommender]:
    """Everything evaluated on ``dataset``, in table order: add new contenders here."""
    del dataset  # every contender takes every dataset as it is
    return [Popularity(), ImplicitALS(seed=seed), ItemKNN(), HotshelfRouter()]


class ShopperSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The cases of one shopper type: how many the split allowed, how many were scored.

    ``unseen_truth`` is the share of their truth items never seen in training, which no
    recommender can find (None without cases).
    """

    available: int
    cases: int
    unseen_truth: float | None


class RecommenderResult(msgspec.Struct, frozen=True, kw_only=True):
    """One recommender's scores on one dataset; ``recommend_ms`` is the mean per case."""

    name: str
    fit_s: float
    recommend_ms: float
    by_type: dict[ShopperType, Scores]
    mixed: Scores


class DatasetReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one dataset's evaluation found, as the table and the JSON show it."""

    dataset: str
    description: str
    k: int
    seed: int
    max_cases: int | None
    split_at: float
    wall_clock: bool
    train_interactions: int
    test_interactions: int
    train_items: int
    shoppers: dict[ShopperType, ShopperSummary]
    results: list[RecommenderResult]
    elapsed_s: float


def evaluate(
    dataset: Dataset,
    recommenders: Sequence[OfflineRecommender] | None = None,
    *,
    k: int = 10,
    max_cases: int | None = DEFAULT_MAX_CASES,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> DatasetReport:
    """Split ``dataset`` at its split time and score ``recommenders`` on its cases.

    ``recommenders`` defaults to :func:`recommenders_for`; ``max_cases`` caps each
    shopper type (drawn with ``seed``).
    """
    if k < 1:
        raise ValidationError(f"k must be at least 1, not {k}")
    started = time.perf_counter()
    split = split_by_time(dataset)
    every = build_cases(split, context_items=CONTEXT_ITEMS)
    cases = sample_cases(every, max_cases, seed)
    catalog = split.train.catalog()
    chosen = recommenders_for(dataset, seed=seed) if recommenders is None else recommenders
    if len({r.name for r in chosen}) != len(chosen):
        raise ValidationError("recommender names must be unique within one evaluation")
    results = [_run(r, split.train, cases, catalog, k, progress) for r in chosen]
    return DatasetReport(
        dataset=dataset.name,
        description=dataset.description,
        k=k,
        seed=seed,
        max_cases=max_cases,
        split_at=split.train.at,
        wall_clock=dataset.wall_clock,
        train_interactions=len(split.train.interactions),
        test_interactions=len(split.test),
        train_items=len(catalog),
        shoppers=_summaries(every, cases, catalog),
        results=results,
        elapsed_s=time.perf_counter() - started,
    )


def _run(
    recommender: OfflineRecommender,
    train: TrainingData,
    cases: Sequence[Case],
    catalog: set[str],
    k: int,
    progress: ProgressCallback | None,
) -> RecommenderResult:
    """Fit one recommender, ask it every case, and score its lists."""
    label = f"{train.dataset}: {recommender.name}"
    if progress is not None:
        progress(f"{label} fit", 0, len(cases))
    started = time.perf_counter()
    recommender.fit(train)
    fitted = time.perf_counter()
    lists = []
    for n, case in enumerate(cases, start=1):
        lists.append(_checked(recommender, case, k))
        if progress is not None and (n % 50 == 0 or n == len(cases)):
            progress(label, n, len(cases))
    answered = time.perf_counter()
    pairs = list(zip(cases, lists, strict=True))
    by_type = {
        shopper: _score([(c, r) for c, r in pairs if c.shopper is shopper], catalog, k)
        for shopper in ShopperType
    }
    return RecommenderResult(
        name=recommender.name,
        fit_s=fitted - started,
        recommend_ms=1000 * (answered - fitted) / max(len(cases), 1),
        by_type=by_type,
        mixed=_score(pairs, catalog, k),
    )


def _score(pairs: list[tuple[Case, list[str]]], catalog: set[str], k: int) -> Scores:
    return score_lists([r for _, r in pairs], [c.truth for c, _ in pairs], catalog, k)


def _checked(recommender: OfflineRecommender, case: Case, k: int) -> list[str]:
    """The recommender's list for ``case``, refused if it breaks the interface's rules."""
    ranked = recommender.recommend(case, k)
    problem = None
    if len(ranked) > k:
        problem = f"returned {len(ranked)} items for k={k}"
    elif len(set(ranked)) != len(ranked):
        problem = "returned an item twice"
    elif excluded := [item for item in ranked if item in case.exclude]:
        problem = f"returned excluded item(s) {excluded[:3]}"
    if problem is not None:
        raise ValidationError(f"recommender {recommender.name!r} {problem} ({case.shopper} case)")
    return ranked


def _summaries(
    every: Sequence[Case], cases: Sequence[Case], catalog: set[str]
) -> dict[ShopperType, ShopperSummary]:
    out = {}
    for shopper in ShopperType:
        chosen = [c for c in cases if c.shopper is shopper]
        truth = [item for c in chosen for item in c.truth]
        unseen = sum(1 for item in truth if item not in catalog) / len(truth) if truth else None
        out[shopper] = ShopperSummary(
            available=sum(1 for c in every if c.shopper is shopper),
            cases=len(chosen),
            unseen_truth=unseen,
        )
    return out
