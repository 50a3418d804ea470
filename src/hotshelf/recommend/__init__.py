"""Recommendations routed by shopper context.

A request's context picks its routes: a new or anonymous visitor gets generic picks
for their location and device (stream state), a known visitor collaborative filtering
on their history (``implicit``), a shopper browsing now items like what the session
is looking at (embeddings blended with co-engagement). Routes blend, then filters,
exclusions and diversity apply; every served list is logged as an impression.
"""

from hotshelf.recommend._context import (
    Filters,
    RecommendRequest,
    Recommendation,
    Recommendations,
    Route,
)

__all__ = [
    "Filters",
    "RecommendRequest",
    "Recommendation",
    "Recommendations",
    "Route",
]
