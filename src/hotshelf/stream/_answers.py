"""What the stream's queries answer with: plain msgspec structs.

They live apart from the modules that build them because those are compiled by mypyc
(``setup.py``), and msgspec reads a struct's annotations to encode it and to write its
JSON schema, which it cannot do for a struct defined in a compiled module.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["BotRecord", "Counts", "History", "ItemScore", "KeyKind", "Verdict"]

KeyKind = Literal["cookie", "ip", "session", "user_agent"]


class Verdict(msgspec.Struct, frozen=True, gc=False):
    """Whether an event comes from a bot, and why (``("ua:googlebot",)``, ``("rate:cookie",)``)."""

    is_bot: bool
    reasons: tuple[str, ...]


class BotRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A visitor flagged now, for ``GET /v1/bots``: which key, why, and how much it sent."""

    kind: KeyKind
    key: str
    reasons: tuple[str, ...]
    first_seen_ms: int
    last_seen_ms: int
    events: int
    flagged_until_ms: int


class History(msgspec.Struct, frozen=True):
    """A user's or session's recent items, most recent first."""

    viewed: list[str]
    carted: list[str]
    bought: list[str]


class ItemScore(msgspec.Struct, frozen=True, gc=False):
    """An item and its score: decayed units (popular), z-score (trending) or a count.

    Not tracked by the cyclic GC (``gc=False``: a string and a float can never be part
    of a cycle), so a tuple of them is untracked too: kept lists of neighbours cost a
    full collection nothing (``recommend.NeighbourCache``).
    """

    item_id: str
    score: float


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """Event counts: all events and bot events per type, item engagements per type in the
    asked segment, and the most engaged-with items (lower bounds)."""

    events: dict[str, int]
    bot_events: dict[str, int]
    segment: dict[str, int]
    top_items: list[ItemScore]
