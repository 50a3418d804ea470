"""The simulated catalog and how popular each item is.

Items get a Zipf popularity rank; pickers draw items per department or per
subcategory in proportion to that popularity, so a segment's department tilt
still leaves a Zipf-shaped item distribution.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect
from collections.abc import Sequence

from hotshelf.events import Availability, Item
from hotshelf.simulation._vocabulary import (
    ADJECTIVES,
    COLORS,
    DEPARTMENTS,
    SIZES,
    Department,
    Subcategory,
)

__all__ = ["SUBCATEGORIES", "CatalogModel", "Picker", "build_catalog"]

# Every subcategory in a flat list: (department index, department, subcategory).
SUBCATEGORIES: tuple[tuple[int, Department, Subcategory], ...] = tuple(
    (d, dept, sub) for d, dept in enumerate(DEPARTMENTS) for sub in dept.subcategories
)
_AVAILABILITY = (
    (Availability.IN_STOCK, 0.88),
    (Availability.OUT_OF_STOCK, 0.07),
    (Availability.PREORDER, 0.03),
    (Availability.DISCONTINUED, 0.02),
)
_SENTENCES = (
    "The {adj} {noun} from {brand} is made for everyday use.",
    "Customers love its {color} finish and solid build.",
    "Backed by a two-year {brand} warranty.",
    "Free returns within 30 days.",
    "A favourite in our {sub} range.",
    "Designed to last, priced to please.",
)


class Picker:
    """Draws from a fixed list in proportion to fixed weights (cumulative sums + bisect)."""

    __slots__ = ("_cum", "_total", "values")

    def __init__(self, values: Sequence[int], weights: Sequence[float]) -> None:
        self.values = list(values)
        self._cum = list(itertools.accumulate(weights))
        self._total = self._cum[-1]

    def pick(self, rng: random.Random) -> int:
        return self.values[bisect(self._cum, rng.random() * self._total)]


class CatalogModel:
    """Items plus the indexes the traffic generators draw from (items by position)."""

    def __init__(self, items: list[Item], subcat: list[int], rank: list[int], zipf: float) -> None:
        self.items = items
        self.ids = [item.item_id for item in items]
        self.subcat = subcat
        self.rank = rank
        self.weight = [(r + 1.0) ** -zipf for r in rank]
        self.sellable = [
            item.availability in (Availability.IN_STOCK, Availability.PREORDER) for item in items
        ]
        self.price = [item.price or 0.0 for item in items]
        members: list[list[int]] = [[] for _ in SUBCATEGORIES]
        for index, sub in enumerate(subcat):
            members[sub].append(index)
        for group in members:
            group.sort(key=rank.__getitem__)
        self.sub_ranked = members
        self.by_sub = [Picker(g, [self.weight[i] for i in g]) for g in members]
        dept_members: list[list[int]] = [[] for _ in DEPARTMENTS]
        for sub, group in enumerate(members):
            dept_members[SUBCATEGORIES[sub][0]].extend(group)
        self.by_dept = [Picker(g, [self.weight[i] for i in g]) for g in dept_members]
        self.dept_weight = [sum(self.weight[i] for i in g) for g in dept_members]
        self.sub_queries = [_queries(sub) for sub in range(len(SUBCATEGORIES))]

    def cold_item(self, rng: random.Random) -> int:
        """An item from the unpopular middle-to-tail (ranks 40-80 %) of the catalog."""
        n = len(self.items)
        return self.rank.index(rng.randrange(int(n * 0.4), int(n * 0.8)))


def _queries(sub: int) -> list[str]:
    _, dept, subcategory = SUBCATEGORIES[sub]
    nouns = [n.lower() for n in subcategory.nouns]
    styled = [f"{a.lower()} {n}" for a in ADJECTIVES[:4] for n in nouns]
    branded = [f"{b.lower()} {n}" for b in dept.brands[:2] for n in nouns[:2]]
    return nouns + styled + branded


def _price(rng: random.Random, median: float) -> float:
    raw = rng.lognormvariate(math.log(median), 0.45)
    return round(raw) - 0.01 if raw >= 5 else round(raw, 2)


def _availability(rng: random.Random) -> Availability:
    roll = rng.random()
    for value, share in _AVAILABILITY:
        roll -= share
        if roll < 0:
            return value
    return Availability.IN_STOCK


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).replace("--", "-")


def _item(rng: random.Random, index: int, sub: int) -> Item:
    _, dept, subcategory = SUBCATEGORIES[sub]
    noun, brand = rng.choice(subcategory.nouns), rng.choice(dept.brands)
    adj, color = rng.choice(ADJECTIVES), rng.choice(COLORS)
    item_id = f"sku-{index:06d}"
    attributes: dict[str, object] = {"brand": brand, "color": color}
    title = f"{brand} {adj} {noun}, {color}"
    if dept.sized:
        attributes["size"] = size = rng.choice(SIZES)
        title += f", Size {size}"
    words = {"adj": adj.lower(), "noun": noun.lower(), "brand": brand, "color": color.lower()}
    sentences = rng.sample(_SENTENCES, 3)
    return Item(
        item_id=item_id,
        title=title,
        description=" ".join(s.format(sub=subcategory.name.lower(), **words) for s in sentences),
        category=[dept.name, subcategory.name, noun],
        price=_price(rng, subcategory.median_price),
        availability=_availability(rng),
        image=f"/images/{_slug(dept.name)}/{item_id}.jpg",
        attributes=attributes,
    )


def build_catalog(rng: random.Random, n_items: int, zipf: float) -> CatalogModel:
    """``n_items`` items spread over every subcategory, with shuffled popularity ranks."""
    n_subs = len(SUBCATEGORIES)
    subs = [i % n_subs for i in range(n_items)]  # every subcategory gets items
    rng.shuffle(subs)
    items = [_item(rng, i, sub) for i, sub in enumerate(subs)]
    rank = list(range(n_items))
    rng.shuffle(rank)
    return CatalogModel(items, subs, rank, zipf)
