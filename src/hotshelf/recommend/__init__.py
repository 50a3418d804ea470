"""Recommendations routed by shopper context.

A request's context picks its routes: a new or anonymous visitor gets generic picks
for their location and device (stream state), a known visitor collaborative filtering
on their history (``implicit``), a shopper browsing now items like what the session
is looking at (embeddings blended with co-engagement). Routes blend, then filters,
exclusions and diversity apply; every served list is logged as an impression, and
``Attribution`` credits the clicks and purchases that follow to it.
"""

from hotshelf.recommend._attribution import Attribution
from hotshelf.recommend._attribution_feed import AttributionFeed
from hotshelf.recommend._collaborative import CollaborativeModel, load_current, train_from_logs
from hotshelf.recommend._context import (
    Filters,
    Recommendation,
    Recommendations,
    RecommendRequest,
    Route,
)
from hotshelf.recommend._engine import Recommender
from hotshelf.recommend._experiments import VariantAssigner, impression_event
from hotshelf.recommend._interactions import Interactions, read_interactions, visitor_key
from hotshelf.recommend._online_metrics import OnlineMetrics

__all__ = [
    "Attribution",
    "AttributionFeed",
    "CollaborativeModel",
    "Filters",
    "Interactions",
    "OnlineMetrics",
    "RecommendRequest",
    "Recommendation",
    "Recommendations",
    "Recommender",
    "Route",
    "VariantAssigner",
    "impression_event",
    "load_current",
    "read_interactions",
    "train_from_logs",
    "visitor_key",
]
