"""Human shopping sessions: search, browse, view, cart, buy.

A session is a generator of ``(ts_ms, Event)`` in time order. Visitors enter by
search, a category page, or straight onto a product; they mostly move to similar
items in the same subcategory; some add to cart, some of those check out. Event
ids are stamped later by the scheduler, in emission order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hotshelf.events import Event, EventType
from hotshelf.simulation._catalog import CatalogModel
from hotshelf.simulation._visitors import Audience, Visitor

__all__ = ["Hot", "Step", "World", "human_session"]

MAX_PAGES = 40
Step = tuple[int, Event]
_VIEW, _CLICK, _CART = EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART
_IMPRESSION, _SEARCH, _PURCHASE = EventType.IMPRESSION, EventType.SEARCH, EventType.PURCHASE


class Hot:
    """An item that is hot from ``start_ms`` (until ``end_ms``) for one segment or all."""

    __slots__ = ("device", "end_ms", "item", "location", "share", "start_ms")

    def __init__(
        self,
        item: int,
        start_ms: int,
        end_ms: int | None,
        location: str | None,
        device: str | None,
        share: float,
    ) -> None:
        self.item, self.start_ms, self.share = item, start_ms, share
        self.end_ms = end_ms if end_ms is not None else 1 << 62
        self.location, self.device = location, device

    def applies(self, visitor: Visitor, t: int) -> bool:
        return (
            self.start_ms <= t < self.end_ms
            and (self.location is None or self.location == visitor.location)
            and (self.device is None or self.device == visitor.device)
        )


class World:
    """What every session draws from: catalog, audience, hot items, funnel rates."""

    def __init__(
        self,
        catalog: CatalogModel,
        audience: Audience,
        hot: list[Hot],
        cart_rate: float,
        purchase_rate: float,
    ) -> None:
        self.catalog, self.audience, self.hot = catalog, audience, hot
        self.cart_rate, self.purchase_rate = cart_rate, purchase_rate

    def hot_for(self, visitor: Visitor, t: int) -> list[Hot]:
        return [h for h in self.hot if h.applies(visitor, t)] if self.hot else []


def _think(rng: random.Random) -> int:
    """Milliseconds between two pages (log-normal, median about 8 s)."""
    return 500 + int(rng.lognormvariate(9.0, 0.9))


def _position(rng: random.Random, n: int) -> int:
    """Which slot of an n-long list gets the click: the top slots far more often."""
    return min(int(rng.expovariate(0.45)), n - 1)


def _hot_pick(rng: random.Random, hot: list[Hot], scale: float) -> int | None:
    for h in hot:
        if rng.random() < h.share * scale:
            return h.item
    return None


class _Session:
    """One visit's state; its generator methods yield ``(ts_ms, Event)`` and move ``t``."""

    def __init__(
        self, world: World, rng: random.Random, visitor: Visitor, t: int, session_id: str
    ) -> None:
        self.world, self.cat, self.rng, self.v = world, world.catalog, rng, visitor
        self.t, self.session_id = t, session_id
        self.item: int | None = None  # the product page the visitor is on, if any
        self.cart: list[int] = []

    def event(self, kind: EventType, ts: int, **fields: Any) -> Event:
        v = self.v
        return Event(
            type=kind,
            timestamp=ts / 1000,
            cookie_id=v.cookie_id,
            user_id=v.user_id,
            session_id=self.session_id,
            location=v.location,
            device=v.device,
            user_agent=v.user_agent,
            ip=v.ip,
            **fields,
        )

    def segment_item(self) -> int:
        """An item drawn by this visitor's segment preferences and item popularity."""
        department = self.world.audience.departments[self.v.segment].pick(self.rng)
        return self.cat.by_dept[department].pick(self.rng)

    def from_list(self, listed: list[int], ctr: float, **fields: Any) -> Iterator[Step]:
        """Show a list; maybe click one (top slots more often), which sets ``item``."""
        ids, rng = self.cat.ids, self.rng
        self.item = None
        if not listed:
            return
        yield self.t, self.event(_IMPRESSION, self.t, item_ids=[ids[i] for i in listed], **fields)
        if rng.random() < ctr:
            self.item = listed[_position(rng, len(listed))]
            self.t += 1000 + int(rng.expovariate(1 / 4000))
            yield self.t, self.event(_CLICK, self.t, item_id=ids[self.item])
            self.t += 300

    def browse(self, sub: int) -> Iterator[Step]:
        ranked = self.cat.sub_ranked[sub]
        page = min(int(self.rng.expovariate(1.0)), 4, (len(ranked) - 1) // 12)
        yield from self.from_list(ranked[page * 12 : page * 12 + 12], 0.55)

    def search(self, sub: int) -> Iterator[Step]:
        query = self.rng.choice(self.cat.sub_queries[sub])
        yield self.t, self.event(_SEARCH, self.t, query=query)
        self.t += 150
        ranked = self.cat.sub_ranked[sub]
        offset = self.rng.randrange(min(3, len(ranked)))
        results = ranked[offset : offset + 10]
        yield from self.from_list(results, 0.65, query=query)

    def related(self, item: int) -> Iterator[Step]:
        sub, rng = self.cat.subcat[item], self.rng
        shown = self.cat.sub_ranked[sub][:4] + [self.cat.by_sub[sub].pick(rng) for _ in range(2)]
        yield from self.from_list(shown, 0.5, properties={"list": "related"})

    def product_page(self, item: int) -> Iterator[Step]:
        """View ``item``, maybe add it to the cart, then pick where to go next."""
        cat, rng = self.cat, self.rng
        yield self.t, self.event(_VIEW, self.t, item_id=cat.ids[item])
        if cat.sellable[item] and rng.random() < self.world.cart_rate:
            self.t += 2000 + int(rng.expovariate(1 / 5000))
            yield self.t, self.event(_CART, self.t, item_id=cat.ids[item])
            self.cart.append(item)
        self.t += _think(rng)

    def checkout(self) -> Iterator[Step]:
        cat, rng = self.cat, self.rng
        if self.cart and rng.random() < self.world.purchase_rate:
            self.t += 20_000 + int(rng.expovariate(1 / 40_000))
            properties = {
                "order_id": f"o-{self.session_id}",
                "revenue": round(sum(cat.price[i] for i in self.cart), 2),
                "currency": "USD",
            }
            item_ids = [cat.ids[i] for i in self.cart]
            yield self.t, self.event(_PURCHASE, self.t, item_ids=item_ids, properties=properties)

    def enter(self, hot: list[Hot], resume: bool) -> Iterator[Step]:
        """Land on a hot item, a search, a category page or a product page."""
        self.item = self.segment_item() if resume else _hot_pick(self.rng, hot, 1.0)
        if self.item is None:
            roll = self.rng.random()
            if roll < 0.3:
                yield from self.search(self.cat.subcat[self.segment_item()])
            elif roll < 0.6:
                yield from self.browse(self.cat.subcat[self.segment_item()])
            else:
                self.item = self.segment_item()

    def run(self, resume: bool) -> Iterator[Step]:
        cat, rng = self.cat, self.rng
        hot = self.world.hot_for(self.v, self.t)
        yield from self.enter(hot, resume)
        for _ in range(MAX_PAGES):
            item = self.item
            if item is None:  # left a list without clicking: another list, or leave
                if rng.random() < 0.5:
                    break
                self.t += _think(rng)
                yield from self.browse(cat.subcat[self.segment_item()])
                continue
            yield from self.product_page(item)
            roll = rng.random()
            if roll < 0.45:  # a similar item, as most visits go
                self.item = _hot_pick(rng, hot, 0.3)
                if self.item is None:
                    self.item = cat.by_sub[cat.subcat[item]].pick(rng)
            elif roll < 0.60:
                yield from self.related(item)
            elif roll < 0.70:
                yield from self.search(cat.subcat[self.segment_item()])
            elif roll < 0.78:
                yield from self.browse(cat.subcat[item])
            else:
                break
        yield from self.checkout()


def human_session(
    world: World,
    rng: random.Random,
    visitor: Visitor,
    t: int,
    session_id: str,
    resume: bool = False,
) -> Iterator[Step]:
    """One visit from entry to exit (and maybe a purchase), as ``(ts_ms, Event)`` in order.

    ``resume`` starts on a product page, as a visit already in progress would.
    """
    return _Session(world, rng, visitor, t, session_id).run(resume)
