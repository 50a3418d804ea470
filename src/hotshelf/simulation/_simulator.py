"""``StoreSimulator``: a deterministic store with shoppers, hot items and bots.

Everything random comes from ``random.Random`` instances seeded from the config's
seed (one for building the store, one per ``events()`` call), never from the
clock, so one config always yields the same catalog, ground truth and events.
Sources (sessions, bots) are generators merged by timestamp on a heap.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from typing import NamedTuple

from hotshelf.events import Event, EventType, Item
from hotshelf.simulation._bots import (
    BotIdentity,
    crawler,
    crawler_identity,
    slow_bot,
    sneaky_identity,
    spammer,
)
from hotshelf.simulation._catalog import CatalogModel, build_catalog
from hotshelf.simulation._config import (
    GroundTruth,
    HotTruth,
    Label,
    SimConfig,
    SimEvent,
    SpamTruth,
)
from hotshelf.simulation._sessions import Hot, World, human_session
from hotshelf.simulation._visitors import build_audience
from hotshelf.simulation._vocabulary import CITIES, DEVICES

__all__ = ["StoreSimulator"]

Source = Iterator[tuple[int, Event]]
_CALIBRATION_SESSIONS = 2000


class _Rates(NamedTuple):
    events_per_session: float
    view_share: float
    gap_s: float  # mean time between two events of a session
    # Sessions in progress at the start, per session/s of arrivals: the events that
    # earlier sessions would still emit (sum of event ages) over the events of one
    # resumed session.
    in_progress_s: float


class StoreSimulator:
    """A simulated store: ``catalog()``, ``events(n)`` and the ``ground_truth`` behind them."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        rng = random.Random(f"hotshelf-sim/{cfg.seed}/build")
        self._model: CatalogModel = build_catalog(rng, cfg.n_items, cfg.zipf_exponent)
        audience = build_audience(rng, self._model, cfg.n_visitors, cfg.returning_share)
        self._taken: set[int] = set()
        hot = [self._plan_hot(rng, i) for i in range(len(cfg.hot_items))]
        self._world = World(self._model, audience, hot, cfg.cart_rate, cfg.purchase_rate)
        self._rates = self._calibrate()
        self._crawlers = [crawler_identity(rng, i) for i in range(self._n_crawlers())]
        self._crawl_order = list(self._model.ids)
        rng.shuffle(self._crawl_order)
        self._slow_items = tuple(
            self._model.ids[self._cold(rng)] for _ in range(cfg.slow_bot_items)
        )
        self._slow = [sneaky_identity(rng) for _ in range(self._n_slow_bots())]
        self._bursts = [self._plan_burst(rng, i) for i in range(len(cfg.spam_bursts))]
        self.ground_truth = self._truth(hot)
        self._prefix = cfg.id_prefix if cfg.id_prefix is not None else f"sim{cfg.seed}"

    def catalog(self) -> list[Item]:
        """The store's items (the same objects on every call; treat them as read-only)."""
        return list(self._model.items)

    # -- planning --------------------------------------------------------------

    def _cold(self, rng: random.Random) -> int:
        """A cold item no other plan uses yet."""
        while (index := self._model.cold_item(rng)) in self._taken:
            pass
        self._taken.add(index)
        return index

    def _item_index(self, item_id: str) -> int:
        try:
            index = self._model.ids.index(item_id)
        except ValueError:
            raise ValueError(f"unknown item_id {item_id!r} in the simulation config") from None
        self._taken.add(index)
        return index

    def _plan_hot(self, rng: random.Random, i: int) -> Hot:
        spec, start = self.config.hot_items[i], self.config.start_ms
        if spec.location is not None and spec.location not in {c for c, _ in CITIES}:
            raise ValueError(f"hot item location {spec.location!r} is not a simulated city")
        if spec.device is not None and spec.device not in {d for d, _, _ in DEVICES}:
            raise ValueError(f"hot item device {spec.device!r} is not mobile/desktop/tablet")
        item = self._cold(rng) if spec.item_id is None else self._item_index(spec.item_id)
        end = None if spec.duration_s is None else start + int((spec.at_s + spec.duration_s) * 1000)
        return Hot(item, start + int(spec.at_s * 1000), end, spec.location, spec.device, spec.share)

    def _plan_burst(self, rng: random.Random, i: int) -> tuple[SpamTruth, list[BotIdentity]]:
        spec, cfg = self.config.spam_bursts[i], self.config
        if spec.item_ids is not None:
            items = tuple(self._model.ids[self._item_index(i)] for i in spec.item_ids)
        else:
            items = tuple(self._model.ids[self._cold(rng)] for _ in range(spec.n_items))
        ips = [sneaky_identity(rng).ip for _ in range(max(1, spec.n_cookies // 2))]
        bots = [
            sneaky_identity(rng, ips[k % len(ips)], session=True) for k in range(spec.n_cookies)
        ]
        per_item = self._human_rate() * self._rates.view_share / cfg.n_items
        start = cfg.start_ms + int(spec.at_s * 1000)
        truth = SpamTruth(
            item_ids=items,
            cookies=tuple(b.cookie_id for b in bots),
            ips=tuple(ips),
            start_ms=start,
            end_ms=start + int(spec.duration_s * 1000),
            rate_per_s=per_item * spec.multiplier * len(items),
        )
        return truth, bots

    def _calibrate(self) -> _Rates:
        """Session statistics from a fixed pilot run, to hit the configured rate."""
        rng = random.Random(f"hotshelf-sim/{self.config.seed}/calibrate")
        pilot = World(
            self._model, self._world.audience, [], self.config.cart_rate, self.config.purchase_rate
        )
        events = views = age_ms = span_ms = resumed = 0
        for n in range(_CALIBRATION_SESSIONS):
            visitor = pilot.audience.next_visitor(rng)
            for ts, event in human_session(pilot, rng, visitor, 0, str(n)):
                events += 1
                views += event.type is EventType.VIEW
                age_ms += ts
            span_ms += ts
            resumed += sum(1 for _ in human_session(pilot, rng, visitor, 0, str(n), True))
        return _Rates(
            events_per_session=events / _CALIBRATION_SESSIONS,
            view_share=views / events,
            gap_s=span_ms / 1000 / max(events - _CALIBRATION_SESSIONS, 1),
            in_progress_s=age_ms / 1000 / resumed,
        )

    def _human_rate(self) -> float:
        return self.config.events_per_s * (1.0 - self.config.bot_share)

    def _bot_rate(self) -> float:
        return self.config.events_per_s * self.config.bot_share

    def _n_crawlers(self) -> int:
        wanted = self._bot_rate() * self.config.crawler_fraction
        return self.config.n_crawlers if wanted > 0 else 0

    def _n_slow_bots(self) -> int:
        wanted = self._bot_rate() * (1.0 - self.config.crawler_fraction)
        if wanted <= 0 or self.config.slow_bot_items <= 0:
            return 0
        return max(1, round(wanted * self.config.slow_bot_period_s))

    def _truth(self, hot: list[Hot]) -> GroundTruth:
        cookies: dict[str, Label] = {}
        ips: dict[str, Label] = {}
        groups = [(self._crawlers, Label.CRAWLER), (self._slow, Label.SLOW_BOT)]
        groups += [(bots, Label.CLICK_SPAM) for _, bots in self._bursts]
        for bots, label in groups:
            for bot in bots:
                cookies[bot.cookie_id] = ips[bot.ip] = label
        ids = self._model.ids
        return GroundTruth(
            bot_cookies=cookies,
            bot_ips=ips,
            bot_user_agents={b.user_agent: Label.CRAWLER for b in self._crawlers},
            slow_bot_items=self._slow_items if self._slow else (),
            spam_bursts=tuple(truth for truth, _ in self._bursts),
            hot_items=tuple(
                HotTruth(
                    item_id=ids[h.item],
                    start_ms=h.start_ms,
                    end_ms=None if h.end_ms >= 1 << 62 else h.end_ms,
                    location=h.location,
                    device=h.device,
                )
                for h in hot
            ),
        )

    # -- the event stream ------------------------------------------------------

    def _bot_sources(self, rng: random.Random) -> Iterator[tuple[Source, Label]]:
        t0 = self.config.start_ms
        if self._crawlers:
            rate = self._bot_rate() * self.config.crawler_fraction / len(self._crawlers)
            for me in self._crawlers:
                yield crawler(rng, me, self._crawl_order, t0, rate), Label.CRAWLER
        period = self.config.slow_bot_period_s * 1000.0
        for k, me in enumerate(self._slow):
            item = self._slow_items[k % len(self._slow_items)]
            yield slow_bot(rng, me, item, t0, period), Label.SLOW_BOT
        for truth, bots in self._bursts:
            rate = truth.rate_per_s / len(bots)
            for me in bots:
                yield (
                    spammer(rng, me, truth.item_ids, truth.start_ms, truth.end_ms, rate),
                    Label.CLICK_SPAM,
                )

    def events(
        self, n: int | None = None, *, duration_s: float | None = None
    ) -> Iterator[SimEvent]:
        """Events in timestamp order from ``start_ms``: ``n`` of them, ``duration_s`` worth,
        whichever ends first, or endless when both are None. Every call starts over."""
        rng = random.Random(f"hotshelf-sim/{self.config.seed}/events")
        heap: list[tuple[int, int, Event, Label, Source]] = []
        seq = itertools.count()
        for source, label in self._bot_sources(rng):
            for ts, event in itertools.islice(source, 1):
                heap.append((ts, next(seq), event, label, source))
        heapq.heapify(heap)
        return self._merge(rng, heap, seq, n, duration_s)

    def _merge(
        self,
        rng: random.Random,
        heap: list[tuple[int, int, Event, Label, Source]],
        seq: Iterator[int],
        n: int | None,
        duration_s: float | None,
    ) -> Iterator[SimEvent]:
        world, prefix = self._world, self._prefix
        session_gap_s = self._rates.events_per_session / self._human_rate()
        end = self.config.start_ms + duration_s * 1000 if duration_s is not None else float("inf")
        limit = n if n is not None else -1
        next_session = self.config.start_ms + rng.expovariate(1.0 / session_gap_s) * 1000
        sessions = emitted = 0
        # The store is already open: start as many sessions as are in progress in the
        # steady state, so the event rate is flat from the first second.
        gap_ms = self._rates.gap_s * 1000
        for _ in range(round(self._rates.in_progress_s / session_gap_s)):
            start = self.config.start_ms + int(rng.expovariate(1.0 / gap_ms))
            visitor = world.audience.next_visitor(rng)
            source = human_session(world, rng, visitor, start, f"{prefix}-s{sessions}", True)
            sessions += 1
            for ts, event in itertools.islice(source, 1):
                heapq.heappush(heap, (ts, next(seq), event, Label.HUMAN, source))
        while emitted != limit:
            if not heap or next_session < heap[0][0]:
                visitor = world.audience.next_visitor(rng)
                start = int(next_session)
                source = human_session(world, rng, visitor, start, f"{prefix}-s{sessions}")
                sessions += 1
                next_session += rng.expovariate(1.0 / session_gap_s) * 1000
                for ts, event in itertools.islice(source, 1):
                    heapq.heappush(heap, (ts, next(seq), event, Label.HUMAN, source))
                continue
            ts, _, event, label, source = heap[0]
            if ts >= end:
                return
            event.event_id = f"{prefix}-{emitted:09d}"
            emitted += 1
            yield SimEvent(event, label)
            following = next(source, None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following[0], next(seq), following[1], label, source))
