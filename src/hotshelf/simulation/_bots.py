"""Bot traffic with known signatures, for scoring bot filters.

* crawlers: bot user agents from data-centre networks, sweeping the catalog in
  order at several pages a second, views only, never a cart;
* click spam: a few cookies on a few IPs hammering a few items with click + view
  pairs at ~100x an item's normal rate, for a short window;
* slow bots: many residential-looking IPs, each viewing one of a few target items
  on a near-fixed period (about 2 % jitter), with ordinary browser user agents.

Identities are drawn when the simulator is built (they make the ground truth); the
timing is drawn from the event stream's generator, so a seed fixes both.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import NamedTuple

from hotshelf.events import Event, EventType
from hotshelf.simulation._visitors import BOT_FIRST_OCTETS, random_ip
from hotshelf.simulation._vocabulary import BROWSER_AGENTS, CITIES, CRAWLERS

__all__ = ["BotIdentity", "crawler", "crawler_identity", "slow_bot", "sneaky_identity", "spammer"]


class BotIdentity(NamedTuple):
    cookie_id: str
    ip: str
    user_agent: str
    location: str
    device: str
    session_id: str | None


def crawler_identity(rng: random.Random, index: int) -> BotIdentity:
    """A crawler from the well-known list, cycling through it by ``index``."""
    spec = CRAWLERS[index % len(CRAWLERS)]
    ip = f"{spec.ip_prefix}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return BotIdentity(
        f"c{rng.getrandbits(64):016x}", ip, spec.user_agent, spec.location, "desktop", None
    )


def sneaky_identity(
    rng: random.Random, ip: str | None = None, session: bool = False
) -> BotIdentity:
    """A bot that passes for a browser: ordinary UA, a city, residential-looking IP."""
    device = "desktop" if rng.random() < 0.7 else "mobile"
    cookie = f"c{rng.getrandbits(64):016x}"
    return BotIdentity(
        cookie_id=cookie,
        ip=ip or random_ip(rng, BOT_FIRST_OCTETS),
        user_agent=rng.choice(BROWSER_AGENTS[device]),
        location=rng.choice(CITIES)[0],
        device=device,
        session_id=f"{cookie}-s" if session else None,
    )


def _event(me: BotIdentity, kind: EventType, t: int, item_id: str) -> Event:
    return Event(
        type=kind,
        timestamp=t / 1000,
        item_id=item_id,
        cookie_id=me.cookie_id,
        session_id=me.session_id,
        location=me.location,
        device=me.device,
        user_agent=me.user_agent,
        ip=me.ip,
    )


def crawler(
    rng: random.Random, me: BotIdentity, order: list[str], t0: int, rate: float
) -> Iterator[tuple[int, Event]]:
    """Endless sweep over ``order`` at ``rate`` pages/s with +-50 % spread."""
    gap = 1000.0 / rate
    t = t0 + int(rng.random() * gap)
    i = rng.randrange(len(order))
    while True:
        yield t, _event(me, EventType.VIEW, t, order[i])
        i = (i + 1) % len(order)
        t += 1 + int(gap * rng.uniform(0.5, 1.5))


def spammer(
    rng: random.Random, me: BotIdentity, items: tuple[str, ...], start: int, end: int, rate: float
) -> Iterator[tuple[int, Event]]:
    """Click + view pairs on ``items`` between ``start`` and ``end`` at ``rate`` events/s."""
    pair_rate_ms = rate / 2000.0
    t = start + int(rng.expovariate(pair_rate_ms))
    while t < end:
        item = rng.choice(items)
        yield t, _event(me, EventType.CLICK, t, item)
        seen = t + 40 + rng.randrange(120)
        yield seen, _event(me, EventType.VIEW, seen, item)
        t = max(seen, t + int(rng.expovariate(pair_rate_ms)))


def slow_bot(
    rng: random.Random, me: BotIdentity, item: str, t0: int, period_ms: float
) -> Iterator[tuple[int, Event]]:
    """One view of ``item`` every ``period_ms`` (+-2 %), from a random phase."""
    t = t0 + int(rng.random() * period_ms)
    while True:
        yield t, _event(me, EventType.VIEW, t, item)
        t += int(period_ms * rng.uniform(0.98, 1.02))
