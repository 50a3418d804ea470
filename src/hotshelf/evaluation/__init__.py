"""Offline evaluation: recommenders against baselines on real data, by shopper type.

A dataset (MovieLens, Instacart, Diginetica) is loaded into one shape, split on time,
and turned into cases (new, returning and browsing shoppers) that every recommender
answers; Recall@k, NDCG@k and catalog coverage compare them side by side. To evaluate
one more recommender, implement :class:`OfflineRecommender` and add it to
:func:`recommenders_for`.
"""

from hotshelf.evaluation._baselines import ImplicitALS, ItemKNN, Popularity
from hotshelf.evaluation._cases import (
    CONTEXT_ITEMS,
    Case,
    ShopperType,
    build_cases,
    sample_cases,
)
from hotshelf.evaluation._dataset import SESSION_GAP_S, Dataset, Interaction, sessionize
from hotshelf.evaluation._harness import (
    DEFAULT_MAX_CASES,
    DatasetReport,
    ProgressCallback,
    RecommenderResult,
    ShopperSummary,
    evaluate,
    recommenders_for,
)
from hotshelf.evaluation._loaders import (
    DATASETS,
    DEFAULT_DATA_DIR,
    load_dataset,
    load_diginetica,
    load_instacart,
    load_movielens,
)
from hotshelf.evaluation._metrics import (
    Scores,
    catalog_coverage,
    ndcg_at_k,
    recall_at_k,
    score_lists,
)
from hotshelf.evaluation._recommender import OfflineRecommender
from hotshelf.evaluation._router import HotshelfRouter
from hotshelf.evaluation._split import TimeSplit, TrainingData, split_by_time, time_at_share

__all__ = [
    "CONTEXT_ITEMS",
    "DATASETS",
    "DEFAULT_DATA_DIR",
    "DEFAULT_MAX_CASES",
    "SESSION_GAP_S",
    "Case",
    "Dataset",
    "DatasetReport",
    "HotshelfRouter",
    "ImplicitALS",
    "Interaction",
    "ItemKNN",
    "OfflineRecommender",
    "Popularity",
    "ProgressCallback",
    "RecommenderResult",
    "Scores",
    "ShopperSummary",
    "ShopperType",
    "TimeSplit",
    "TrainingData",
    "build_cases",
    "catalog_coverage",
    "evaluate",
    "load_dataset",
    "load_diginetica",
    "load_instacart",
    "load_movielens",
    "ndcg_at_k",
    "recall_at_k",
    "recommenders_for",
    "sample_cases",
    "score_lists",
    "sessionize",
    "split_by_time",
    "time_at_share",
]
