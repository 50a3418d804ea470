"""Response bodies of the HTTP API, as msgspec structs (they also feed the OpenAPI doc)."""

from __future__ import annotations

import msgspec

from hotshelf.stream import BotRecord, ItemScore

__all__ = [
    "BotCounts",
    "Bots",
    "Damage",
    "ErrorBody",
    "EventsAccepted",
    "Health",
    "ItemsAccepted",
    "Problem",
    "RankedItems",
    "Readiness",
    "RelatedItems",
    "Segment",
]


class EventsAccepted(msgspec.Struct):
    """``accepted`` events were appended durably at ``first_offset`` .. ``last_offset``.

    ``duplicates`` were already stored (same ``event_id``) and are acknowledged without
    being stored again; the offsets are null when nothing new was appended.
    """

    accepted: int
    duplicates: int
    first_offset: int | None
    last_offset: int | None


class ItemsAccepted(msgspec.Struct):
    """``accepted`` catalog changes appended at ``first_offset`` .. ``last_offset``."""

    accepted: int
    first_offset: int
    last_offset: int


class Problem(msgspec.Struct):
    path: str
    problem: str


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error answer: a stable ``error`` code, a message, and for 4xx input errors
    the list of ``problems`` (every bad field, with its JSON path)."""

    error: str
    message: str
    problems: list[Problem] | None = None


class Health(msgspec.Struct):
    status: str = "ok"


class Damage(msgspec.Struct):
    """A stretch of a log found damaged when it was opened (and cut off or skipped)."""

    topic: str
    path: str
    first_offset: int
    last_offset: int | None
    reason: str


class Readiness(msgspec.Struct):
    """``ready`` is true once the logs are open, the catalog is caught up and the stream
    processor runs (or is off), and the catalog is embedded (or embeddings are off).
    ``stream_lag``: records per topic not yet in the stream state; ``embeddings_lag``:
    catalog records not yet embedded; ``attribution_lag``: events not yet attributed.
    All catch up in the background, so a lag does not make the service unready; nor
    does a missing collaborative model (``recommend_model`` null: not trained yet), nor
    a recommend replica still starting (``recommend_replicas_ready`` of
    ``recommend.replicas``: the server answers what they would meanwhile)."""

    ready: bool
    checks: dict[str, str]
    events_end_offset: int | None = None
    catalog_items: int | None = None
    dedup_ids: int | None = None
    damage: list[Damage] = msgspec.field(default_factory=list)
    stream_lag: dict[str, int] | None = None
    embeddings_lag: int | None = None
    recommend_model: str | None = None
    attribution_lag: int | None = None
    recommend_replicas_ready: int | None = None


class Segment(msgspec.Struct):
    """The segment asked for: location x device x top-level category, "*" for all."""

    location: str = "*"
    device: str = "*"
    category: str = "*"


class RankedItems(msgspec.Struct, kw_only=True):
    """Trending (z-score against the next longer window) or popular (decayed units) items.

    ``as_of_ms`` is the latest event time in the state, the "now" scores decay to;
    ``lag`` is the records per topic the state does not reflect yet.
    """

    items: list[ItemScore]
    segment: Segment
    window_s: float
    as_of_ms: int
    lag: dict[str, int]


class RelatedItems(msgspec.Struct, kw_only=True):
    """Items most often ``kind`` in the same sessions as ``item_id``; scores are counts."""

    item_id: str
    kind: str
    items: list[ItemScore]
    as_of_ms: int
    lag: dict[str, int]


class BotCounts(msgspec.Struct, kw_only=True):
    """Events the bot filter checked and flagged; flagged events per reason (an event
    can have several)."""

    checked: int
    flagged: int
    by_reason: dict[str, int]


class Bots(msgspec.Struct, kw_only=True):
    """Visitors flagged now (most recently seen first) and the filter's counts;
    ``enabled`` is false when ``bots.enabled`` is off (nothing is flagged)."""

    enabled: bool
    bots: list[BotRecord]
    counts: BotCounts
