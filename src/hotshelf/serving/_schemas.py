"""Response bodies of the HTTP API, as msgspec structs (they also feed the OpenAPI doc)."""

from __future__ import annotations

import msgspec

__all__ = [
    "Damage",
    "ErrorBody",
    "EventsAccepted",
    "Health",
    "ItemsAccepted",
    "Problem",
    "Readiness",
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
    """``ready`` is true once the logs are open and the catalog is caught up."""

    ready: bool
    checks: dict[str, str]
    events_end_offset: int | None = None
    catalog_items: int | None = None
    dedup_ids: int | None = None
    damage: list[Damage] = msgspec.field(default_factory=list)
