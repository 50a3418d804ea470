"""The time-based split: everything before a moment trains, everything after is judged.

A random split would let a model learn from the future it is asked to predict (a
shopper's later purchases, an item that only became popular afterwards); a split on
time asks what a live system could have known. Items first seen after the split
cannot be recommended by anyone: they stay in the truth, and the harness reports
how much of the truth they are.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import msgspec

from hotshelf.errors import ValidationError
from hotshelf.evaluation._dataset import Dataset, Interaction
from hotshelf.events import Item

__all__ = ["TimeSplit", "TrainingData", "split_by_time", "time_at_share"]


class TrainingData(msgspec.Struct, frozen=True, kw_only=True):
    """What a recommender may learn from: the interactions before ``at``, in time order.

    ``items`` is the dataset's item metadata (titles, categories): a catalog exists
    before anyone shops, so it is not split. ``wall_clock`` and ``repeats`` are the
    dataset's (see :class:`Dataset`).
    """

    dataset: str
    at: float
    interactions: tuple[Interaction, ...]
    items: Mapping[str, Item]
    wall_clock: bool
    repeats: bool

    def catalog(self) -> set[str]:
        """The items seen in training: the only ones a recommender can know to recommend."""
        return {i.item for i in self.interactions}


class TimeSplit(msgspec.Struct, frozen=True, kw_only=True):
    """A dataset cut at ``train.at``: ``test`` holds every interaction at or after it."""

    train: TrainingData
    test: tuple[Interaction, ...]


def time_at_share(interactions: Collection[Interaction], share: float) -> float:
    """The time before which ``share`` of ``interactions`` (in any order) happened."""
    if not interactions:
        raise ValidationError("cannot place a split in a dataset with no interactions")
    if not 0 < share < 1:
        raise ValidationError(f"the training share must lie strictly between 0 and 1, not {share}")
    times = sorted(i.timestamp for i in interactions)
    return times[int(len(times) * share)]


def split_by_time(dataset: Dataset, at: float | None = None) -> TimeSplit:
    """Interactions strictly before ``at`` (default: the dataset's split time) train.

    A session that spans the split is cut in two like everything else: its early part
    is training history, its late part judged.
    """
    at = dataset.split_time if at is None else at
    train = tuple(i for i in dataset.interactions if i.timestamp < at)
    test = tuple(i for i in dataset.interactions if i.timestamp >= at)
    if not train or not test:
        raise ValidationError(
            f"splitting {dataset.name} at {at} leaves {len(train)} training and "
            f"{len(test)} test interactions: both sides need some"
        )
    training = TrainingData(
        dataset=dataset.name,
        at=at,
        interactions=train,
        items=dataset.items,
        wall_clock=dataset.wall_clock,
        repeats=dataset.repeats,
    )
    return TimeSplit(train=training, test=test)
