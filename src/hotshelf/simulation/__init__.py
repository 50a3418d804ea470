"""A deterministic simulated store: catalog, shoppers, hot items and labelled bots.

Used by the demo, tests and benchmarks. ``StoreSimulator(SimConfig(seed=...))``
gives the catalog, an event stream of ``SimEvent(event, label)`` and the
``GroundTruth`` (bots, spammed items, hot items and when they turned hot).
"""

from hotshelf.simulation._config import (
    GroundTruth,
    HotItem,
    HotTruth,
    Label,
    SimConfig,
    SimEvent,
    SpamBurst,
    SpamTruth,
)
from hotshelf.simulation._simulator import StoreSimulator

__all__ = [
    "GroundTruth",
    "HotItem",
    "HotTruth",
    "Label",
    "SimConfig",
    "SimEvent",
    "SpamBurst",
    "SpamTruth",
    "StoreSimulator",
]
