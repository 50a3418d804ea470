"""The Instacart catalog from ``../shared/data/instacart``: benchmark data, never runtime."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


class Product(NamedTuple):
    product_id: str
    name: str
    department: str
    aisle: str


def products() -> list[Product]:
    """Every product, in the file's order, with its department and aisle names."""
    folder = DATA / "instacart"
    with (folder / "aisles.csv").open(newline="") as f:
        aisles = {row["aisle_id"]: row["aisle"] for row in csv.DictReader(f)}
    with (folder / "departments.csv").open(newline="") as f:
        departments = {row["department_id"]: row["department"] for row in csv.DictReader(f)}
    with (folder / "products.csv").open(newline="") as f:
        return [
            Product(row["product_id"], row["product_name"],
                    departments[row["department_id"]], aisles[row["aisle_id"]])
            for row in csv.DictReader(f)
        ]  # fmt: skip
