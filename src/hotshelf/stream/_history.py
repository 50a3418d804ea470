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

from collections.abc import Sequence
from typing import Any

from hotshelf.errors import ValidationError
from hotshelf.stream._answers import History
from hotshelf.stream._bounded import keep_after_trim, trim_oldest

__all__ = ["BOUGHT", "CARTED", "VIEWED", "RecentHistory"]

VIEWED, CARTED, BOUGHT = 0, 1, 2
_NONE: tuple[str, ...] = ()


class _Table:
    """Per kind, the lists of every key; when each key was last active; how many it may hold."""

    __slots__ = ("active", "kinds", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kinds: tuple[dict[str, dict[str, None]], ...] = ({}, {}, {})
        self.active: dict[str, int] = {}  # event time of the key's latest event

    def make_room(self) -> None:
        """Drop the least recently active keys: the table is full and a new key comes."""
        for dropped in trim_oldest(self.active, int, keep_after_trim(self.limit)):
            for lists in self.kinds:
                lists.pop(dropped, None)

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
    ) -> Sequence[str]:
        """Record ``item`` in a session's ``which`` list at ``t_ms``; when it is new to the
        list, returns the up to ``before`` items added last before it (else none).

        Marking the key active is inlined here and in ``user_step``: they run for every
        engagement event.
        """
        table = self.sessions
        active = table.active
        if len(active) >= table.limit and session_id not in active:
            table.make_room()
        active[session_id] = t_ms
        lists = table.kinds[which]
        items = lists.get(session_id)
        if items is None:
            lists[session_id] = {item: None}
            return _NONE
        if item in items:
            del items[item]  # a repeat moves to the end
            items[item] = None
            return _NONE
        earlier: list[str] = []  # newest first
        if before > 0:
            for key in reversed(items):
                earlier.append(key)
                if len(earlier) >= before:
                    break
        items[item] = None
        if len(items) > self.length:
            del items[next(iter(items))]
        return earlier

    def user_step(self, user_id: str, t_ms: int, which: int, item: str) -> None:
        """Record ``item`` in a user's ``which`` list at ``t_ms``."""
        table = self.users
        active = table.active
        if len(active) >= table.limit and user_id not in active:
            table.make_room()
        active[user_id] = t_ms
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
