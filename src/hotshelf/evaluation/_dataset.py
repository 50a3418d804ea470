"""The one shape every evaluation dataset is loaded into.

MovieLens ratings, Instacart baskets and Diginetica sessions differ in almost
everything; the split, the cases and the recommenders only ever see this: who
touched which item when, how strongly (a view or a purchase, the event types the
product itself takes), in which session if the data has sessions, and the catalog
metadata the data carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from hotshelf.events import EventType, Item

__all__ = ["SESSION_GAP_S", "Dataset", "Interaction", "sessionize"]

# A visitor idle this long starts a new session: the usual web-analytics timeout.
SESSION_GAP_S = 30 * 60.0


class Interaction(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One visitor touching one item. ``kind`` is ``VIEW`` or ``PURCHASE``."""

    visitor: str
    item: str
    timestamp: float
    kind: EventType
    session: str | None = None


class Dataset(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded dataset: interactions in time order, item metadata and where to split.

    ``wall_clock`` says whether ``timestamp`` is Unix seconds; where it is not (Instacart)
    it only orders events, so nothing may read durations from it. ``repeats`` says
    whether shoppers come back to items they already had (groceries, page views) or
    not (a movie is rated once): where they do not, a visitor's history is never
    recommended back to them. ``items`` holds only the items the data describes.
    """

    name: str
    description: str
    interactions: tuple[Interaction, ...]
    items: Mapping[str, Item]
    split_time: float
    wall_clock: bool
    repeats: bool
    has_sessions: bool

    @classmethod
    def build(
        cls,
        name: str,
        description: str,
        interactions: Iterable[Interaction],
        items: Mapping[str, Item],
        *,
        split_time: float,
        wall_clock: bool,
        repeats: bool,
    ) -> Dataset:
        """A dataset with its interactions in time order (ties keep their input order)."""
        ordered = tuple(sorted(interactions, key=lambda i: i.timestamp))
        return cls(
            name=name,
            description=description,
            interactions=ordered,
            items=items,
            split_time=split_time,
            wall_clock=wall_clock,
            repeats=repeats,
            has_sessions=any(i.session is not None for i in ordered),
        )


def sessionize(
    interactions: Iterable[Interaction], gap_s: float = SESSION_GAP_S
) -> list[Interaction]:
    """The same interactions with sessions cut at ``gap_s`` of a visitor's inactivity.

    For data that records no sessions (MovieLens): a burst of activity is the nearest
    thing to a visit. Sessions are named ``<visitor>#<n>``, ``n`` counting from 0.
    """
    by_visitor: dict[str, list[Interaction]] = {}
    for interaction in interactions:
        by_visitor.setdefault(interaction.visitor, []).append(interaction)
    out: list[Interaction] = []
    for visitor, own in by_visitor.items():
        own.sort(key=lambda i: i.timestamp)
        number, last = 0, own[0].timestamp
        for interaction in own:
            if interaction.timestamp - last > gap_s:
                number += 1
            last = interaction.timestamp
            out.append(msgspec.structs.replace(interaction, session=f"{visitor}#{number}"))
    return out
