"""The simulated audience: who visits, from where, on what, and what they lean towards.

A segment is a (location, device) pair; each has its own department preferences
(a random per-city tilt times a fixed per-device tilt), which is what
segment-aware recommenders and per-segment trending should pick up.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from hotshelf.simulation._catalog import CatalogModel, Picker
from hotshelf.simulation._vocabulary import BROWSER_AGENTS, CITIES, DEPARTMENTS, DEVICES

__all__ = ["BOT_FIRST_OCTETS", "Audience", "Visitor", "build_audience", "random_ip"]

# Human traffic comes from these networks; bots from others, so IP ground truth is clean.
_HUMAN_FIRST_OCTETS = (24, 47, 50, 68, 71, 73, 76, 81, 82, 86, 92, 98, 99, 108, 174, 176, 188)
BOT_FIRST_OCTETS = (45, 91, 185, 193, 194, 195, 212, 213, 217)
_CITY = Picker(range(len(CITIES)), [weight for _, weight in CITIES])
_DEVICE = Picker(range(len(DEVICES)), [share for _, share, _ in DEVICES])


class Visitor(NamedTuple):
    cookie_id: str
    user_id: str | None
    location: str
    device: str
    user_agent: str
    ip: str
    segment: int


class Audience:
    """Visitors, who comes next, and each segment's department preferences."""

    def __init__(self, visitors: list[Visitor], visits: Picker, departments: list[Picker]) -> None:
        self.visitors = visitors
        self.visits = visits
        self.departments = departments  # by segment

    def next_visitor(self, rng: random.Random) -> Visitor:
        return self.visitors[self.visits.pick(rng)]


def random_ip(rng: random.Random, first_octets: tuple[int, ...]) -> str:
    a, b, c = rng.choice(first_octets), rng.randrange(256), rng.randrange(256)
    return f"{a}.{b}.{c}.{rng.randrange(1, 255)}"


def segment_of(location_index: int, device_index: int) -> int:
    return location_index * len(DEVICES) + device_index


def _department_pickers(rng: random.Random, catalog: CatalogModel) -> list[Picker]:
    pickers = []
    for _ in CITIES:
        city_tilt = [rng.lognormvariate(0.0, 0.5) for _ in DEPARTMENTS]
        for _, _, device_tilt in DEVICES:
            weights = [
                catalog.dept_weight[d] * city_tilt[d] * device_tilt.get(dept.name, 1.0)
                for d, dept in enumerate(DEPARTMENTS)
            ]
            pickers.append(Picker(range(len(DEPARTMENTS)), weights))
    return pickers


def _visitor(rng: random.Random, index: int, returning: bool, prefixes: list[list[str]]) -> Visitor:
    loc, dev = _CITY.pick(rng), _DEVICE.pick(rng)
    device = DEVICES[dev][0]
    return Visitor(
        cookie_id=f"c{rng.getrandbits(64):016x}",
        user_id=f"u{index:07d}" if returning else None,
        location=CITIES[loc][0],
        device=device,
        user_agent=rng.choice(BROWSER_AGENTS[device]),
        ip=f"{rng.choice(prefixes[loc])}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        segment=segment_of(loc, dev),
    )


def build_audience(
    rng: random.Random, catalog: CatalogModel, n_visitors: int, returning_share: float
) -> Audience:
    """``n_visitors`` visitors; signed-in buyers come back about three times as often."""
    prefixes = [
        [f"{rng.choice(_HUMAN_FIRST_OCTETS)}.{rng.randrange(256)}" for _ in range(3)]
        for _ in CITIES
    ]
    visitors, weights = [], []
    for index in range(n_visitors):
        returning = rng.random() < returning_share
        visitors.append(_visitor(rng, index, returning, prefixes))
        weights.append((3.0 if returning else 1.0) * rng.lognormvariate(0.0, 0.8))
    return Audience(visitors, Picker(range(n_visitors), weights), _department_pickers(rng, catalog))
