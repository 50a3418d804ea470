"""``StateView``: the queries of ``StreamState`` answered over several states at once.

Each lane of a processor (real-time, batch) keeps its own ``StreamState``, and so
does each partition of a processor group; every one counts a disjoint part of the
stream. A view sums them: units and counts add, trend scores are computed from the
summed window and baseline units (``_trending.trending_over``), co-engagement counts
add, histories are taken from the first state that knows the visitor, topped up from
the others. Over one state a view answers exactly what that state answers.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from hotshelf.stream._answers import Counts, History, ItemScore
from hotshelf.stream._state import StreamState, ranked
from hotshelf.stream._trending import ANY, popular_over, trending_over

__all__ = ["StateQueries", "StateView"]


class StateQueries(Protocol):
    """The read queries of the stream state: what ``StateView`` answers, and what the
    read endpoints and the recommender ask (over live, remote or offline state)."""

    @property
    def now_ms(self) -> int: ...

    def trending(
        self,
        location: str | None = ...,
        device: str | None = ...,
        category: str | None = ...,
        window: float | None = ...,
        k: int = ...,
    ) -> list[ItemScore]: ...

    def popular(
        self,
        location: str | None = ...,
        device: str | None = ...,
        category: str | None = ...,
        window: float | None = ...,
        k: int = ...,
    ) -> list[ItemScore]: ...

    def related(self, item_id: str, kind: str = ..., k: int = ...) -> list[ItemScore]: ...

    def related_counts(self, item_id: str, kind: str = ..., k: int = ...) -> list[tuple[str, int]]:
        """``related`` as (item, count) pairs, for callers that build their own objects."""
        ...

    def history(self, *, user_id: str | None = None, session_id: str | None = None) -> History: ...


class StateView:
    """Read-only queries over ``parts``; the caller holds whatever lock guards them."""

    def __init__(self, parts: Sequence[StreamState]) -> None:
        if not parts:
            raise ValueError("a view needs at least one state")
        self.parts = list(parts)
        self._first = self.parts[0]

    @property
    def now_ms(self) -> int:
        """The latest event time any part applied (epoch ms)."""
        return max(part.now_ms for part in self.parts)

    def trending(
        self,
        location: str | None = ANY,
        device: str | None = ANY,
        category: str | None = ANY,
        window: float | None = None,
        k: int = 20,
        *,
        now_ms: int | None = None,
    ) -> list[ItemScore]:
        """Items rising against their own baseline in a segment, over every part."""
        query = (location, device, category, window, k)
        return ranked(self.parts, trending_over, *query, now_ms=now_ms)

    def popular(
        self,
        location: str | None = ANY,
        device: str | None = ANY,
        category: str | None = ANY,
        window: float | None = None,
        k: int = 20,
        *,
        now_ms: int | None = None,
    ) -> list[ItemScore]:
        """Items with the most decayed engagement units in a segment, over every part."""
        query = (location, device, category, window, k)
        return ranked(self.parts, popular_over, *query, now_ms=now_ms)

    def related(self, item_id: str, kind: str = "viewed", k: int = 20) -> list[ItemScore]:
        """Items most often ``kind`` in the same sessions as ``item_id``, counts summed."""
        return [ItemScore(item, float(n)) for item, n in self.related_counts(item_id, kind, k)]

    def related_counts(
        self, item_id: str, kind: str = "viewed", k: int = 20
    ) -> list[tuple[str, int]]:
        """``related`` as (item, count) pairs: the recommender makes its candidates from
        them directly, without an ``ItemScore`` in between."""
        if len(self.parts) == 1:
            return self._first.related_counts(item_id, kind, k)
        limit = self._first.top(k)
        knowing = [part for part in self.parts if part.related_counts(item_id, kind, 1)]
        if len(knowing) <= 1:  # one part knows the item (a lane, a partition): nothing to add
            return knowing[0].related_counts(item_id, kind, limit) if knowing else []
        top_k = self._first.config.top_k
        lists = [part.related_counts(item_id, kind, top_k) for part in knowing]
        totals: dict[str, int] = {}
        for found in lists:
            for item, n in found:
                totals[item] = totals.get(item, 0) + n
        best = heapq.nsmallest(limit, ((-n, item) for item, n in totals.items()))
        return [(item, -neg) for neg, item in best]

    def history(self, *, user_id: str | None = None, session_id: str | None = None) -> History:
        """Recent items of one user or session: the first part's, then the others' after."""
        found = [part.history(user_id=user_id, session_id=session_id) for part in self.parts]
        if len(found) == 1:
            return found[0]
        limit = self._first.config.history_length

        def joined(lists: list[list[str]]) -> list[str]:
            return list(dict.fromkeys(item for each in lists for item in each))[:limit]

        return History(
            viewed=joined([h.viewed for h in found]),
            carted=joined([h.carted for h in found]),
            bought=joined([h.bought for h in found]),
        )

    def counts(
        self,
        location: str | None = ANY,
        device: str | None = ANY,
        category: str | None = ANY,
        k: int = 20,
    ) -> Counts:
        """Counts per event type and the most engaged-with items, summed over the parts."""
        if len(self.parts) == 1:
            return self._first.counts(location, device, category, k)
        top_k = self._first.config.top_k
        found = [part.counts(location, device, category, top_k) for part in self.parts]
        top: Counter[str] = Counter()
        for each in found:
            top.update({score.item_id: int(score.score) for score in each.top_items})
        best = heapq.nsmallest(self._first.top(k), ((-n, item) for item, n in top.items()))
        return Counts(
            events=_summed([each.events for each in found]),
            bot_events=_summed([each.bot_events for each in found]),
            segment=_summed([each.segment for each in found]),
            top_items=[ItemScore(item, float(-neg)) for neg, item in best],
        )

    def stats(self) -> dict[str, int]:
        """The parts' table sizes, summed."""
        total: Counter[str] = Counter()
        for part in self.parts:
            total.update(part.stats())
        return dict(total)


def _summed(maps: list[dict[str, int]]) -> dict[str, int]:
    total = dict(maps[0])
    for each in maps[1:]:
        for key, n in each.items():
            total[key] = total.get(key, 0) + n
    return total
