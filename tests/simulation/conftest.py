"""One simulated run shared by the simulation tests (80 s of traffic at 500 events/s)."""

from __future__ import annotations

import pytest

from hotshelf.events import Event
from hotshelf.simulation import HotItem, Label, SimConfig, SimEvent, SpamBurst, StoreSimulator

START_MS = 1_750_000_000_000
CONFIG = SimConfig(
    seed=7,
    events_per_s=500.0,
    start_ms=START_MS,
    spam_bursts=(SpamBurst(at_s=20.0, duration_s=5.0),),
    hot_items=(HotItem(at_s=40.0), HotItem(at_s=50.0, location="London, GB", share=0.4)),
)


@pytest.fixture(scope="session")
def sim() -> StoreSimulator:
    return StoreSimulator(CONFIG)


@pytest.fixture(scope="session")
def stream(sim: StoreSimulator) -> list[SimEvent]:
    return list(sim.events(duration_s=80.0))


def humans(stream: list[SimEvent]) -> list[Event]:
    return [s.event for s in stream if s.label is Label.HUMAN]
