"""What a recommendation request says about the shopper, and what it gets back.

``RecommendRequest`` is the body of ``POST /v1/recommend``; ``Recommendations`` is the
answer. Every returned item says why it is there (``reason``) and which route brought
it (``route``); the list as a whole names the routes used, the experiment variant, the
collaborative model version and the impression id that later clicks attribute to.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from hotshelf.events._model import Id, Price, ShortText

__all__ = [
    "Filters",
    "RecommendRequest",
    "Recommendation",
    "Recommendations",
    "Route",
]


class Route(enum.StrEnum):
    """Where candidates come from, by what is known of the shopper."""

    GENERIC = "generic"  # popular and trending for the location and device
    PERSONAL = "personal"  # collaborative filtering on the visitor's history
    BROWSING = "browsing"  # items like what the session is looking at now


CategoryList = Annotated[list[ShortText], msgspec.Meta(max_length=256)]


class Filters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Restrictions a request puts on the returned items (all must hold)."""

    include_categories: CategoryList | None = None  # an item must be in one of these
    exclude_categories: CategoryList | None = None  # ... and in none of these
    min_price: Price | None = None
    max_price: Price | None = None


class RecommendRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The shopper's context. ``cookie_id`` is required: it keys the experiment arm."""

    cookie_id: Id
    user_id: Id | None = None
    session_id: Id | None = None
    location: ShortText | None = None
    device: ShortText | None = None
    current_item_id: Id | None = None
    k: Annotated[int, msgspec.Meta(ge=1)] | None = None  # None: recommend.default_k
    filters: Filters | None = None
    variant: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class Recommendation(msgspec.Struct, frozen=True, kw_only=True):
    """One recommended item, its blended score, the route that brought it and why."""

    item_id: str
    score: float
    route: Route
    reason: str


class Recommendations(msgspec.Struct, kw_only=True):
    """A served list: logged as one impression under ``impression_id``."""

    impression_id: str
    items: list[Recommendation]
    routes: list[Route]
    variant: str
    model_version: str | None
