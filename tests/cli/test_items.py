"""``hotshelf items load`` / ``get`` against a real file log in a temporary data dir."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from typer.testing import CliRunner

from hotshelf.catalog import CatalogView
from hotshelf.cli import app
from hotshelf.config import load_config
from hotshelf.events import Item
from hotshelf.log import open_log

runner = CliRunner()


def items_cli(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["items", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def write_items(path: Path, count: int) -> list[Item]:
    items = [Item(item_id=f"i{n}", title=f"Item {n}", price=float(n)) for n in range(count)]
    path.write_bytes(b"".join(msgspec.json.encode(i) + b"\n" for i in items))
    return items


def catalog_in(data_dir: Path) -> dict[str, Item]:
    config = load_config(overrides=[f"data_dir={json.dumps(str(data_dir))}"], environ={})
    with open_log(config, "catalog") as log:
        view = CatalogView(log)
        view.catch_up()
        return {i.item_id: i for i in view.items()}


def test_load_then_get(tmp_path: Path) -> None:
    data = tmp_path / "data"
    items = write_items(tmp_path / "items.jsonl", 25)
    code, output = items_cli(data, "load", str(tmp_path / "items.jsonl"), "--batch-size", "10")
    assert code == 0, output
    assert "25 new" in output
    assert catalog_in(data) == {i.item_id: i for i in items}
    code, output = items_cli(data, "load", str(tmp_path / "items.jsonl"))
    assert code == 0
    assert "25 replaced" in output
    code, output = items_cli(data, "get", "i3")
    assert code == 0
    assert msgspec.json.decode(output, type=Item) == items[3]


def test_get_unknown_exits_1(tmp_path: Path) -> None:
    code, output = items_cli(tmp_path, "get", "nope")
    assert code == 1
    assert "no item 'nope'" in output


def test_a_bad_file_loads_nothing_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,price\na,A,1\nb,B,lots\n")
    code, output = items_cli(tmp_path / "data", "load", str(path))
    assert code == 1
    assert "row 2: price" in output
    assert catalog_in(tmp_path / "data") == {}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "items.xml").write_text("<items/>")
    code, output = items_cli(tmp_path, "load", str(tmp_path / "items.xml"))
    assert code == 2
    assert "--format" in output
    code, _ = items_cli(tmp_path, "load", str(tmp_path / "missing.csv"))
    assert code == 2
    code, output = items_cli(tmp_path, "load", str(tmp_path / "items.xml"), "--format", "xml")
    assert code == 2


def test_explicit_format_and_config_override(tmp_path: Path) -> None:
    path = tmp_path / "items.txt"
    path.write_text("item_id,title\nx,Thing\n")
    code, output = items_cli(
        tmp_path / "data", "load", str(path), "-f", "csv", "--set", "log.fsync=false"
    )
    assert code == 0, output
    assert "x" in catalog_in(tmp_path / "data")
    code, output = items_cli(
        tmp_path / "data", "load", str(path), "-f", "csv", "--set", "log.nope=1"
    )
    assert code == 1
    assert "invalid configuration" in output


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\n")
    code, output = items_cli(tmp_path / "data", "load", str(path))
    assert code == 1
    assert "holds no items" in output
