"""Online metrics of served recommendations: the counters attribution keeps, the JSON
body of ``GET /v1/metrics/online`` built from them, and their Prometheus series.

Two rates, with two denominators, because the two questions differ:

* per arm (and in the totals), over **impressions**, the served lists:
  ``ctr = clicked_impressions / impressions`` (the share of lists that got at least one
  attributed click) and ``conversion = converted_impressions / impressions`` (... at
  least one attributed purchase). An arm is judged by what its lists achieve.
* per route, over **items shown**, since one list mixes routes:
  ``ctr = clicks / items_shown`` and ``conversion = purchases / items_shown``.

A rate is None (``null``) while its denominator is 0. ``clicks``, ``add_to_carts`` and
``purchases`` count attributed (impression, item) pairs, each at most once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from hotshelf.monitoring import get_logger
from hotshelf.recommend._context import Route

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "ImpressionMetrics",
    "OnlineMetrics",
    "OnlineMetricsCollector",
    "RouteMetrics",
    "VariantMetrics",
]

_logger = get_logger("hotshelf.recommend")
# Attributed action kinds: their index in a tally's ``actions`` and their metric label.
CLICK, ADD_TO_CART, PURCHASE = 0, 1, 2
KINDS = ("click", "add_to_cart", "purchase")


class RouteMetrics(msgspec.Struct, kw_only=True):
    """One route's share: ``impressions`` are the lists holding at least one of its items;
    ``ctr`` and ``conversion`` are per item shown."""

    route: str
    impressions: int
    items_shown: int
    clicks: int
    add_to_carts: int
    purchases: int
    ctr: float | None
    conversion: float | None


class ImpressionMetrics(msgspec.Struct, kw_only=True):
    """Counts over served lists; ``ctr`` and ``conversion`` are per impression."""

    impressions: int
    items_shown: int
    clicks: int
    add_to_carts: int
    purchases: int
    clicked_impressions: int
    converted_impressions: int
    ctr: float | None
    conversion: float | None


class VariantMetrics(ImpressionMetrics, kw_only=True):
    """One experiment arm, and its counts broken down by route."""

    variant: str
    routes: list[RouteMetrics]


class OnlineMetrics(msgspec.Struct, kw_only=True):
    """The body of ``GET /v1/metrics/online``.

    ``as_of_ms`` is the latest event time applied (None before any event): the numbers
    are as of then, whatever the wall clock says. ``lag_records`` is how many log records
    were not applied yet (None when not read through a feed). ``unattributed`` counts
    action events per kind that credited no impression; ``duplicates`` the events
    ignored as already applied.
    """

    as_of_ms: int | None
    events: int
    duplicates: int
    impressions_remembered: int
    unattributed: dict[str, int]
    totals: ImpressionMetrics
    variants: list[VariantMetrics]
    routes: list[RouteMetrics]
    lag_records: int | None = None


_M = TypeVar("_M", bound="ImpressionMetrics")


class Tally:
    """Mutable counters for one arm or one (arm, route) pair."""

    __slots__ = ("actions", "clicked", "converted", "impressions", "items")

    def __init__(self) -> None:
        self.impressions = 0
        self.items = 0
        self.actions = [0, 0, 0]  # by CLICK, ADD_TO_CART, PURCHASE
        self.clicked = 0  # impressions with an attributed click (arms only)
        self.converted = 0  # ... with an attributed purchase

    def add(self, other: Tally) -> None:
        self.impressions += other.impressions
        self.items += other.items
        self.actions = [a + b for a, b in zip(self.actions, other.actions, strict=True)]
        self.clicked += other.clicked
        self.converted += other.converted


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _route_metrics(route: str, t: Tally) -> RouteMetrics:
    clicks, carts, purchases = t.actions
    return RouteMetrics(
        route=route, impressions=t.impressions, items_shown=t.items, clicks=clicks,
        add_to_carts=carts, purchases=purchases, ctr=_rate(clicks, t.items),
        conversion=_rate(purchases, t.items),
    )  # fmt: skip


def _impression_metrics(cls: type[_M], t: Tally, **extra: Any) -> _M:
    clicks, carts, purchases = t.actions
    return cls(
        impressions=t.impressions, items_shown=t.items, clicks=clicks, add_to_carts=carts,
        purchases=purchases, clicked_impressions=t.clicked, converted_impressions=t.converted,
        ctr=_rate(t.clicked, t.impressions), conversion=_rate(t.converted, t.impressions),
        **extra,
    )  # fmt: skip


def _ordered(known: Iterable[str], seen: Iterable[str]) -> list[str]:
    """``known`` names in their order, then any other ``seen`` name, sorted."""
    first = list(dict.fromkeys(known))
    return first + sorted(set(seen) - set(first))


def build_metrics(
    arms: dict[str, Tally],
    pairs: dict[tuple[str, str], Tally],
    configured: Iterable[str],
    *,
    as_of_ms: int | None,
    events: int,
    duplicates: int,
    impressions_remembered: int,
    unattributed: dict[str, int],
) -> OnlineMetrics:
    """The snapshot of these tallies. Every configured arm and every route is listed, at
    zero if need be, so the body's shape does not depend on the traffic seen."""
    names = _ordered(configured, arms)
    routes = _ordered((r.value for r in Route), (route for _, route in pairs))
    variants: list[VariantMetrics] = []
    totals, by_route = Tally(), {route: Tally() for route in routes}
    for name in names:
        arm = arms.get(name) or Tally()
        totals.add(arm)
        per_route = []
        for route in routes:
            pair = pairs.get((name, route)) or Tally()
            by_route[route].add(pair)
            per_route.append(_route_metrics(route, pair))
        variants.append(_impression_metrics(VariantMetrics, arm, variant=name, routes=per_route))
    return OnlineMetrics(
        as_of_ms=as_of_ms, events=events, duplicates=duplicates,
        impressions_remembered=impressions_remembered, unattributed=unattributed,
        totals=_impression_metrics(ImpressionMetrics, totals), variants=variants,
        routes=[_route_metrics(route, t) for route, t in by_route.items()],
    )  # fmt: skip


class OnlineMetricsCollector:
    """``hotshelf_recommend_*``: served lists, items shown and attributed actions per arm
    and route, read from the attribution snapshot at scrape time; and the feed's lag."""

    def __init__(
        self, snapshot: Callable[[], OnlineMetrics], lag: Callable[[], int] | None = None
    ) -> None:
        self._snapshot = snapshot
        self._lag = lag

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def describe(self) -> list[Metric]:
        return list(_families(None, None))

    def collect(self) -> list[Metric]:
        try:
            lag = None if self._lag is None else self._lag()
            return list(_families(self._snapshot(), lag))
        except Exception:  # a failing source (a closed log) must not break the scrape
            _logger.exception("metrics.recommend_failed")
            return []


def _families(snapshot: OnlineMetrics | None, lag: int | None) -> Iterator[Metric]:
    pair_labels = ("variant", "route")
    served = CounterMetricFamily(
        "hotshelf_recommend_impressions",
        "Served lists holding at least one item of the route, per arm and route.",
        labels=pair_labels,
    )
    shown = CounterMetricFamily(
        "hotshelf_recommend_items_shown", "Items shown, per arm and route.", labels=pair_labels
    )
    attributed = CounterMetricFamily(
        "hotshelf_recommend_attributed",
        "Actions attributed to a served item, per arm, route and type (each counted once).",
        labels=(*pair_labels, "type"),
    )
    lists = CounterMetricFamily(
        "hotshelf_recommend_variant_impressions", "Served lists, per arm.", labels=("variant",)
    )
    engaged = CounterMetricFamily(
        "hotshelf_recommend_engaged_impressions",
        "Served lists with at least one attributed click or purchase, per arm and type.",
        labels=("variant", "type"),
    )
    for arm in snapshot.variants if snapshot is not None else ():
        lists.add_metric((arm.variant,), arm.impressions)
        engaged.add_metric((arm.variant, "click"), arm.clicked_impressions)
        engaged.add_metric((arm.variant, "purchase"), arm.converted_impressions)
        for r in arm.routes:
            served.add_metric((arm.variant, r.route), r.impressions)
            shown.add_metric((arm.variant, r.route), r.items_shown)
            counts = (r.clicks, r.add_to_carts, r.purchases)
            for kind, n in zip(KINDS, counts, strict=True):
                attributed.add_metric((arm.variant, r.route, kind), n)
    yield from (served, shown, attributed, lists, engaged)
    if snapshot is None or lag is not None:
        yield GaugeMetricFamily(
            "hotshelf_recommend_feed_lag_records",
            "Events log records attribution has not applied yet.",
            value=lag or 0,
        )
