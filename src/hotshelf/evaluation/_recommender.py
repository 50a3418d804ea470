"""What ``hotshelf evaluate`` measures: anything that learns from the past and ranks items.

The baselines, and the hotshelf router itself, are wrapped in this one interface so
that one harness scores them all on the same cases, and one contract test suite holds
every implementation to the same rules.
"""

from __future__ import annotations

import abc

from hotshelf.evaluation._cases import Case
from hotshelf.evaluation._split import TrainingData

__all__ = ["OfflineRecommender"]


class OfflineRecommender(abc.ABC):
    """A recommender fitted once on the training period and then asked case by case.

    ``recommend`` returns at most ``k`` distinct item ids, best first, none of them in
    ``case.exclude``; an empty list means it has nothing to say for this shopper (an
    unknown visitor with no context, for a model without generic picks). Asked before
    ``fit``, it raises :class:`~hotshelf.errors.ConflictError`.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """A short name for tables and JSON (unique within one run)."""

    @abc.abstractmethod
    def fit(self, train: TrainingData) -> None:
        """Learn from everything before the split; called once, before any ``recommend``."""

    @abc.abstractmethod
    def recommend(self, case: Case, k: int) -> list[str]:
        """Up to ``k`` items for ``case``, best first."""
