"""What a simulation run is asked to do, and what it knows that its events don't say.

``SimConfig`` describes the store and its traffic; ``GroundTruth`` lists the bots,
the spammed items and the hot items with their times, so detectors can be scored.
Labels travel beside each event (``SimEvent``), never inside it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import NamedTuple

import msgspec

from hotshelf.events import Event

__all__ = [
    "GroundTruth",
    "HotItem",
    "HotTruth",
    "Label",
    "SimConfig",
    "SimEvent",
    "SpamBurst",
    "SpamTruth",
]


class Label(enum.StrEnum):
    """Who produced an event."""

    HUMAN = "human"
    CRAWLER = "crawler"
    CLICK_SPAM = "click_spam"
    SLOW_BOT = "slow_bot"


class SimEvent(NamedTuple):
    """A generated event and the label of its source."""

    event: Event
    label: Label

    @property
    def ts_ms(self) -> int:
        """The event's time in epoch milliseconds."""
        ts = self.event.timestamp
        if isinstance(ts, datetime):
            return int(ts.timestamp() * 1000)
        return round((ts or 0) * 1000)


class HotItem(msgspec.Struct, frozen=True, kw_only=True):
    """An item that suddenly becomes hot ``at_s`` seconds into the run.

    ``item_id`` None lets the simulator pick an item that was cold until then;
    ``location``/``device`` None means every segment. ``share`` is the chance that a
    session of the segment starting while it is hot lands on it.
    """

    at_s: float
    item_id: str | None = None
    location: str | None = None
    device: str | None = None
    share: float = 0.15
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ValueError("HotItem.share must be in (0, 1]")


class SpamBurst(msgspec.Struct, frozen=True, kw_only=True):
    """A few cookies hammering a few items at ``multiplier`` x an item's normal rate."""

    at_s: float
    duration_s: float = 10.0
    n_items: int = 3
    n_cookies: int = 4
    multiplier: float = 100.0
    item_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.n_cookies < 1 or self.item_ids == ():
            raise ValueError("a SpamBurst must have at least one item and one cookie")
        if not (self.duration_s > 0 and self.multiplier > 0):
            raise ValueError("SpamBurst.duration_s and multiplier must be positive")


def _default_hot() -> tuple[HotItem, ...]:
    return (HotItem(at_s=60.0), HotItem(at_s=90.0, location="London, GB", share=0.3))


def _default_spam() -> tuple[SpamBurst, ...]:
    return (SpamBurst(at_s=30.0),)


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The simulated store and its traffic; one seed gives one exact event stream."""

    seed: int = 0
    n_items: int = 2000
    n_visitors: int = 20_000
    events_per_s: float = 500.0
    start_ms: int = 1_700_000_000_000
    # share of the events/s made by crawlers and slow bots (spam bursts come on top)
    bot_share: float = 0.05
    crawler_fraction: float = 0.6  # of the bot share; the rest are slow bots
    n_crawlers: int = 3
    slow_bot_period_s: float = 30.0
    slow_bot_items: int = 2
    spam_bursts: tuple[SpamBurst, ...] = msgspec.field(default_factory=_default_spam)
    hot_items: tuple[HotItem, ...] = msgspec.field(default_factory=_default_hot)
    zipf_exponent: float = 1.05
    returning_share: float = 0.3  # visitors who are signed-in buyers (have a user_id)
    cart_rate: float = 0.09  # chance a product view of an available item adds to cart
    purchase_rate: float = 0.35  # chance a session with a cart checks out
    id_prefix: str | None = None  # event ids are f"{prefix}-{n:09d}"; default "sim{seed}"

    def __post_init__(self) -> None:
        if self.n_items < 100:
            raise ValueError("n_items must be at least 100")
        if self.n_visitors < 1:
            raise ValueError("n_visitors must be at least 1")
        if not self.events_per_s > 0:
            raise ValueError("events_per_s must be positive")
        if not 0.0 <= self.bot_share < 1.0:
            raise ValueError("bot_share must be in [0, 1)")
        if not 0.0 <= self.crawler_fraction <= 1.0:
            raise ValueError("crawler_fraction must be in [0, 1]")


class HotTruth(msgspec.Struct, frozen=True, kw_only=True):
    """One item that turned hot: when (epoch ms) and for which segment (None = all)."""

    item_id: str
    start_ms: int
    end_ms: int | None
    location: str | None
    device: str | None


class SpamTruth(msgspec.Struct, frozen=True, kw_only=True):
    """One click-spam burst: its items, sources and window (epoch ms)."""

    item_ids: tuple[str, ...]
    cookies: tuple[str, ...]
    ips: tuple[str, ...]
    start_ms: int
    end_ms: int
    rate_per_s: float


class GroundTruth(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a detector should find; keys of ``bot_*`` map to their ``Label``.

    ``bot_user_agents`` holds only agents no human sends (the crawlers'); slow bots and
    click spam use ordinary browser agents. ``slow_bot_items`` are the slow bots' targets.
    """

    bot_cookies: dict[str, Label]
    bot_ips: dict[str, Label]
    bot_user_agents: dict[str, Label]
    slow_bot_items: tuple[str, ...]
    spam_bursts: tuple[SpamTruth, ...]
    hot_items: tuple[HotTruth, ...]
