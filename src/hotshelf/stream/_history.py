"""Recent history per user and per session: the last N items viewed, carted and bought.

Each list is a dict used as an ordered set (most recent last), so a repeat moves an
item to the end in O(1) and a list never holds an item twice. Sessions and users are
kept up to ``max_sessions``/``max_users``; past that, the least recently active (by
event time, ties by id) are dropped, an eighth at a time.

The lists live in one ``dict[str, dict[str, None]]`` per kind and the last activity
in a ``dict[str, int]``: containers of strings and ints only, which CPython's cyclic GC
does not track, so full collections do not walk hundreds of thousands of histories.

Memory: at most ``(max_sessions + max_users) * 3 * history_length`` item references.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import msgspec

from hotshelf.errors import ValidationError
from hotshelf.stream._bounded import keep_after_trim, trim_oldest

__all__ = ["BOUGHT", "CARTED", "VIEWED", "History", "RecentHistory"]

VIEWED, CARTED, BOUGHT = 0, 1, 2


class History(msgspec.Struct, frozen=True):
    """A user's or session's recent items, most recent first."""

    viewed: list[str]
    carted: list[str]
    bought: list[str]


class _Table:
    """Per kind, the lists of every key; when each key was last active; how many it may hold."""

    __slots__ = ("active", "kinds", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kinds: tuple[dict[str, dict[str, None]], ...] = ({}, {}, {})
        self.active: dict[str, int] = {}  # event time of the key's latest event

    def touch(self, key: str, t_ms: int) -> None:
        """Mark ``key`` active at ``t_ms``, making room first when it is new and the table full."""
        active = self.active
        if len(active) >= self.limit and key not in active:
            for dropped in trim_oldest(active, int, keep_after_trim(self.limit)):
                for lists in self.kinds:
                    lists.pop(dropped, None)
        active[key] = t_ms

    def to_state(self) -> dict[str, Any]:
        viewed, carted, bought = ({k: list(d) for k, d in lists.items()} for lists in self.kinds)
        return {"active": self.active, "viewed": viewed, "carted": carted, "bought": bought}

    def load_state(self, state: dict[str, Any]) -> None:
        self.active = {str(k): int(t) for k, t in state["active"].items()}
        self.kinds = tuple(
            {str(k): dict.fromkeys(str(i) for i in items) for k, items in state[name].items()}
            for name in ("viewed", "carted", "bought")
        )


class RecentHistory:
    """Bounded recent-item lists for sessions and users."""

    def __init__(self, length: int, max_sessions: int, max_users: int) -> None:
        self.length = length
        self.sessions = _Table(max_sessions)
        self.users = _Table(max_users)

    def session_step(
        self, session_id: str, t_ms: int, which: int, item: str, before: int
    ) -> list[str]:
        """Record ``item`` in a session's ``which`` list at ``t_ms``; when it is new to the
        list, returns the up to ``before`` items added last before it (else [])."""
        table = self.sessions
        table.touch(session_id, t_ms)
        lists = table.kinds[which]
        items = lists.get(session_id)
        if items is None:
            lists[session_id] = {item: None}
            return []
        if item in items:
            del items[item]
            earlier = []
        else:
            earlier = list(islice(reversed(items), before))
        items[item] = None
        if len(items) > self.length:
            del items[next(iter(items))]
        return earlier

    def user_step(self, user_id: str, t_ms: int, which: int, item: str) -> None:
        """Record ``item`` in a user's ``which`` list at ``t_ms``."""
        table = self.users
        table.touch(user_id, t_ms)
        lists = table.kinds[which]
        items = lists.get(user_id)
        if items is None:
            lists[user_id] = {item: None}
            return
        if item in items:
            del items[item]
        items[item] = None
        if len(items) > self.length:
            del items[next(iter(items))]

    def get(self, *, user_id: str | None = None, session_id: str | None = None) -> History:
        """The lists of a user or a session (empty when unknown)."""
        if (user_id is None) == (session_id is None):
            raise ValidationError("give exactly one of user_id and session_id")
        table, key = (self.users, user_id) if user_id is not None else (self.sessions, session_id)
        viewed, carted, bought = (list(reversed(d.get(key or "", ()))) for d in table.kinds)
        return History(viewed=viewed, carted=carted, bought=bought)

    def to_state(self) -> dict[str, Any]:
        return {"sessions": self.sessions.to_state(), "users": self.users.to_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.sessions.load_state(state["sessions"])
        self.users.load_state(state["users"])
