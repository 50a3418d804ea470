"""Evaluation cases: one request each, from one kind of shopper, with what they took next.

Three kinds of shopper reach a store, and each needs a different answer:

- **returning**: a visitor with history before the split and no session in hand;
  the truth is every item they touched after it.
- **new**: a visitor with no history and no context, whose truth is again everything
  they touched after the split; only generic recommendations can serve them.
- **browsing**: a session that starts after the split. Its first few distinct items
  are the context (the last of them is the item on screen), the rest are the truth.

The same post-split session can give a new (or returning) case and a browsing one:
they ask about different moments of the visit, on arrival and a few clicks in.
Items a shopper cannot take again are excluded from both what may be recommended and
the truth: the session's context always, and the visitor's history where the data
has no repeats (a movie is rated once).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable, Sequence

import msgspec

from hotshelf.errors import ValidationError
from hotshelf.evaluation._dataset import Interaction
from hotshelf.evaluation._split import TimeSplit

__all__ = ["CONTEXT_ITEMS", "Case", "ShopperType", "build_cases", "sample_cases"]

# Distinct items a browsing case shows before it asks (fewer in short sessions).
CONTEXT_ITEMS = 3


class ShopperType(enum.StrEnum):
    NEW = "new"
    RETURNING = "returning"
    BROWSING = "browsing"


class Case(msgspec.Struct, frozen=True, kw_only=True):
    """One recommendation request and the items that make a good answer.

    ``at`` is when the request is made: the visitor's first interaction after the split,
    or for browsing the last context interaction. ``history`` is the visitor's distinct
    training items, most recent last; ``context`` the session so far, oldest first.
    A recommender must not return anything in ``exclude``.
    """

    shopper: ShopperType
    visitor: str
    at: float
    history: tuple[str, ...]
    context: tuple[Interaction, ...]
    truth: frozenset[str]
    exclude: frozenset[str]
    session: str | None = None

    @property
    def context_items(self) -> tuple[str, ...]:
        return tuple(i.item for i in self.context)

    @property
    def current_item(self) -> str | None:
        """The item on screen: the last of the context, if any."""
        return self.context[-1].item if self.context else None


def build_cases(split: TimeSplit, *, context_items: int = CONTEXT_ITEMS) -> list[Case]:
    """Every case the split allows: returning and new visitors, then browsing sessions."""
    if context_items < 1:
        raise ValidationError(f"browsing cases need at least one context item, not {context_items}")
    history = _histories(split.train.interactions)
    repeats = split.train.repeats
    started_before = {i.session for i in split.train.interactions if i.session is not None}
    sessions = _group(
        (i for i in split.test if i.session is not None and i.session not in started_before),
        key=lambda i: str(i.session),
    )
    return [
        *_visitor_cases(_group(split.test, key=lambda i: i.visitor), history, repeats=repeats),
        *(
            case
            for own in sessions.values()
            if (case := _browsing_case(own, history, context_items, repeats=repeats)) is not None
        ),
    ]


def sample_cases(cases: Sequence[Case], max_cases: int | None, seed: int) -> list[Case]:
    """At most ``max_cases`` cases of each shopper type, drawn with ``seed``, order kept."""
    if max_cases is None:
        return list(cases)
    if max_cases < 1:
        raise ValidationError(f"max_cases must be at least 1, not {max_cases}")
    keep: set[int] = set()
    for shopper in ShopperType:
        indices = [n for n, case in enumerate(cases) if case.shopper is shopper]
        if len(indices) > max_cases:
            # a string seed hashes the same in every process (PYTHONHASHSEED aside)
            indices = random.Random(f"{seed}:{shopper}").sample(indices, max_cases)
        keep.update(indices)
    return [case for n, case in enumerate(cases) if n in keep]


def _histories(interactions: Iterable[Interaction]) -> dict[str, tuple[str, ...]]:
    """visitor -> distinct items, ordered by their last interaction (most recent last)."""
    last: dict[str, dict[str, None]] = {}
    for interaction in interactions:
        own = last.setdefault(interaction.visitor, {})
        own.pop(interaction.item, None)  # re-inserting moves the item to the end
        own[interaction.item] = None
    return {visitor: tuple(items) for visitor, items in last.items()}


def _group(
    interactions: Iterable[Interaction], *, key: Callable[[Interaction], str]
) -> dict[str, list[Interaction]]:
    """Interactions grouped by ``key``, groups in order of their first interaction."""
    groups: dict[str, list[Interaction]] = {}
    for interaction in interactions:
        groups.setdefault(key(interaction), []).append(interaction)
    return groups


def _visitor_cases(
    by_visitor: dict[str, list[Interaction]],
    history: dict[str, tuple[str, ...]],
    *,
    repeats: bool,
) -> Iterable[Case]:
    for visitor, own in by_visitor.items():
        past = history.get(visitor, ())
        exclude = frozenset() if repeats else frozenset(past)
        truth = frozenset(i.item for i in own) - exclude
        if truth:
            yield Case(
                shopper=ShopperType.RETURNING if past else ShopperType.NEW,
                visitor=visitor,
                at=own[0].timestamp,
                history=past,
                context=(),
                truth=truth,
                exclude=exclude,
            )


def _browsing_case(
    session: list[Interaction],
    history: dict[str, tuple[str, ...]],
    context_items: int,
    *,
    repeats: bool,
) -> Case | None:
    """The session's first distinct items as context and the rest as truth, if any."""
    firsts: dict[str, Interaction] = {}
    for interaction in session:
        firsts.setdefault(interaction.item, interaction)
    if len(firsts) < 2:
        return None
    ordered = list(firsts.values())
    context = tuple(ordered[: min(context_items, len(ordered) - 1)])
    visitor = session[0].visitor
    past = history.get(visitor, ())
    exclude = frozenset(i.item for i in context) | (frozenset() if repeats else frozenset(past))
    truth = frozenset(i.item for i in ordered[len(context) :]) - exclude
    if not truth:
        return None
    return Case(
        shopper=ShopperType.BROWSING,
        visitor=visitor,
        at=context[-1].timestamp,
        history=past,
        context=context,
        truth=truth,
        exclude=exclude,
        session=session[0].session,
    )
