"""Catalog file loaders: CSV, JSON lines, JSON arrays and Parquet; every bad row reported."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotshelf.catalog import detect_format, load_items_file
from hotshelf.errors import ValidationError
from hotshelf.events import Availability, Item

CSV_HEADER = "item_id,title,description,category,price,availability,image,attributes,color\n"


def write_csv(path: Path, *rows: str) -> Path:
    path.write_text(CSV_HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        load_items_file(path, **kwargs)
    return [(p.path, p.problem) for p in caught.value.problems]


def test_csv(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "items.csv",
        'a1,Shirt,"Soft, warm",Fashion > Men > Shirts,19.5,In Stock,/a1.jpg,'
        '"{""size"": ""M""}",red',
        "a2,Mug,,Home/Kitchen,,preorder,,,",
        "3,Book,,,0,,,,blue",
    )
    first, second, third = load_items_file(path)
    assert first == Item(
        item_id="a1",
        title="Shirt",
        description="Soft, warm",
        category=["Fashion", "Men", "Shirts"],
        price=19.5,
        image="/a1.jpg",
        attributes={"color": "red", "size": "M"},
    )
    assert second == Item(
        item_id="a2", title="Mug", category=["Home", "Kitchen"], availability=Availability.PREORDER
    )
    assert third == Item(item_id="3", title="Book", price=0.0, attributes={"color": "blue"})


def test_csv_with_a_byte_order_mark_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "items.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8-sig") as f:
        f.write("item_id,title\nx,Thing\n")
    assert load_items_file(path) == [Item(item_id="x", title="Thing")]


def test_json_lines_and_json_array(tmp_path: Path) -> None:
    records = [
        {"item_id": "a", "title": "A", "category": ["X", "Y"], "price": 2, "brand": "Acme"},
        {"item_id": 7, "title": "B", "category": "X > Z", "attributes": {"k": [1, 2]}},
    ]
    lines = tmp_path / "items.jsonl"
    lines.write_text(json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n")
    array = tmp_path / "items.json"
    array.write_text(json.dumps(records))
    expected = [
        Item(item_id="a", title="A", category=["X", "Y"], price=2.0, attributes={"brand": "Acme"}),
        Item(item_id="7", title="B", category=["X", "Z"], attributes={"k": [1, 2]}),
    ]
    assert load_items_file(lines) == expected
    assert load_items_file(array) == expected


def test_parquet(tmp_path: Path) -> None:
    table = pa.table(
        {
            "item_id": pa.array([1, 2], pa.int64()),
            "title": ["One", "Two"],
            "category": [["A", "B"], None],
            "price": [1.5, float("nan")],
            "attributes": pa.array([[("color", "red")], None], pa.map_(pa.string(), pa.string())),
            "stock": [3, 4],
        }
    )
    path = tmp_path / "items.parquet"
    pq.write_table(table, path)
    assert load_items_file(path) == [
        Item(
            item_id="1",
            title="One",
            category=["A", "B"],
            price=1.5,
            attributes={"stock": 3, "color": "red"},
        ),
        Item(item_id="2", title="Two", attributes={"stock": 4}),
    ]


def test_every_bad_row_is_reported_with_its_row_and_field(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "items.csv",
        "a1,Fine,,,1,,,,",
        "a2,,,,abc,sold out,,{bad,",
        "a1,Again,,,2,,,,",
        "a4,Negative,,,-3,,,,",
    )
    found = problems_of(path)
    assert [p for p, _ in found] == [
        "row 2: attributes",
        "row 2: title",
        "row 2: price",
        "row 2: availability",
        "row 3: item_id",
        "row 4: price",
    ]
    assert all(problem.endswith(f"(line {int(p[4]) + 1})") for p, problem in found)
    assert "in_stock, out_of_stock" in found[3][1]
    assert "duplicate of row 1" in found[4][1]
    assert "'abc'" in found[2][1]


def test_problem_lists_are_capped(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "items.csv", *[f"a{n},,,,x,,,," for n in range(80)])
    with pytest.raises(ValidationError, match="80 bad row") as caught:
        load_items_file(path, max_problems=100)
    assert len(caught.value.problems) == 100
    assert "first 100 of 160 problems" in caught.value.message


def test_bad_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "items.ndjson"
    path.write_text(
        '{"item_id": "a", "title": "A"}\n{oops\n[1, 2]\n{"item_id": "", "title": "E"}\n'
    )
    found = problems_of(path)
    assert [p for p, _ in found] == ["row 2", "row 3", "row 4: item_id"]
    assert found[0][1].startswith("invalid JSON")
    assert "expected a JSON object" in found[1][1]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("items.csv", "id,name\n1,x\n", "lacks required columns"),
        ("items.csv", "", "empty file"),
        ("items.json", '{"item_id": "a"}', "array of objects"),
        ("items.json", "[", "invalid JSON"),
        ("items.parquet", "not parquet", "not a readable Parquet file"),
        ("items.csv", b"item_id,title\n1,\xff\n", "not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, text: str | bytes, message: str) -> None:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ValidationError, match=message):
        load_items_file(path)


def test_formats_by_extension(tmp_path: Path) -> None:
    assert detect_format(Path("a.CSV")) == "csv"
    assert detect_format(Path("a.jsonl.gz")) == "jsonl"
    assert detect_format(Path("a.pq")) == "parquet"
    with pytest.raises(ValidationError, match="cannot tell the format"):
        detect_format(Path("items.xml"))
    path = tmp_path / "items.txt"
    path.write_text("item_id,title\nx,Y\n")
    assert load_items_file(path, "csv") == [Item(item_id="x", title="Y")]


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)
items = st.lists(
    st.builds(
        Item,
        item_id=text.filter(lambda s: s.strip() == s and s != ""),
        title=text.filter(lambda s: s != ""),
        description=text,
        category=st.lists(
            text.filter(lambda s: s.strip() == s and s != "" and not set(s) & {">", "/"}),
            max_size=4,
        ),
        price=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
        availability=st.sampled_from(Availability),
        image=st.none() | text.filter(bool),
        attributes=st.none() | st.dictionaries(text.filter(bool), text, min_size=1, max_size=3),
    ),
    max_size=8,
    unique_by=lambda i: i.item_id,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=items)
def test_written_catalogs_load_back(tmp_path: Path, items: list[Item]) -> None:
    lines = tmp_path / "round.jsonl"
    lines.write_bytes(b"".join(msgspec.json.encode(i) + b"\n" for i in items))
    assert load_items_file(lines) == items
    table = tmp_path / "round.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "title", "description", "category", "price", "availability",
                         "image", "attributes"])  # fmt: skip
        for i in items:
            writer.writerow([
                i.item_id, i.title, i.description, " > ".join(i.category),
                "" if i.price is None else repr(i.price), i.availability.value, i.image or "",
                json.dumps(i.attributes) if i.attributes else "",
            ])  # fmt: skip
    loaded = load_items_file(table)
    assert loaded == [msgspec.structs.replace(i, attributes=i.attributes or None) for i in items]
