"""``EmbeddingJob``: only what changed is encoded, deletions go, crashes resume, a new
model starts over; with the real encoder, a real file log and the mmap store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from hotshelf.catalog import CatalogView
from hotshelf.config import LogConfig
from hotshelf.embeddings import (
    EmbeddingJob,
    ExactIndex,
    LocalTier,
    MmapTier,
    TwoTierStore,
    item_text,
)
from hotshelf.events import Item
from hotshelf.log import FileLog
from hotshelf.models import TextEncoder, load_text_encoder

TITLES = [
    "Cordless Drill 18V", "Banana Bunch", "Stainless Steel Saucepan", "Yoga Mat, Purple",
    "Trail Running Shoes", "Espresso Beans 1kg", "Wireless Earbuds", "Kids Raincoat, Yellow",
]  # fmt: skip


class CountingEncoder:
    """The real encoder, counting what it is asked to encode (and able to claim another
    version, as a fine-tuned model would have)."""

    def __init__(self, encoder: TextEncoder, version: str | None = None) -> None:
        self.encoder = encoder
        self.version = version or encoder.version
        self.texts: list[str] = []

    def predict(self, batch: Sequence[str]) -> np.ndarray:
        self.texts.extend(batch)
        return self.encoder.predict(batch)


@pytest.fixture(scope="module")
def encoder() -> Iterator[TextEncoder]:
    model = load_text_encoder(threads=1)
    yield model
    model.close()


class Setup:
    def __init__(self, tmp_path: Path, encoder: TextEncoder) -> None:
        self.tmp_path = tmp_path
        self.base = encoder
        self.log = FileLog(tmp_path / "catalog", LogConfig(fsync=False))
        self.catalog = CatalogView(self.log)
        self.store = TwoTierStore(LocalTier(384, 100), MmapTier(tmp_path / "vectors", 384))

    def job(self, *, version: str | None = None, chunk: int = 1024) -> EmbeddingJob:
        self.encoder = CountingEncoder(self.base, version)
        self.index = ExactIndex(384)
        job = EmbeddingJob(self.catalog, self.log, self.encoder, self.store, self.index,
                           self.tmp_path / "emb", chunk=chunk)  # fmt: skip
        job.load_index()
        return job

    def close(self) -> None:
        self.store.close()
        self.log.close()


@pytest.fixture
def setup(tmp_path: Path, encoder: TextEncoder) -> Iterator[Setup]:
    s = Setup(tmp_path, encoder)
    yield s
    s.close()


def items(n: int = len(TITLES)) -> list[Item]:
    return [
        Item(item_id=f"i{i}", title=TITLES[i], category=["Shop"], price=10.0 + i)
        for i in range(n)
    ]


def test_first_run_encodes_everything_then_nothing(setup: Setup) -> None:
    setup.catalog.upsert(items())
    job = setup.job()
    report = job.run()
    assert (report.encoded, report.removed, report.offset) == (len(TITLES), 0, len(TITLES))
    assert len(job) == len(setup.index) == len(TITLES)
    vectors, found = setup.store.load_many(["i0", "i3"])
    assert found.all()
    expected = setup.base.predict([item_text(setup.catalog.get("i0"))])[0]
    np.testing.assert_allclose(vectors[0], expected, atol=1e-6)
    assert setup.index.search(vectors[1], 1)[0].item_id == "i3"
    again = job.run()
    assert (again.encoded, again.removed) == (0, 0)
    assert len(setup.encoder.texts) == len(TITLES)


def test_only_changed_text_is_encoded_again(setup: Setup) -> None:
    setup.catalog.upsert(items())
    job = setup.job()
    job.run()
    setup.encoder.texts.clear()
    renamed = Item(item_id="i1", title="Plantain Bunch", category=["Shop"], price=11.0)
    repriced = Item(item_id="i2", title=TITLES[2], category=["Shop"], price=99.0)
    setup.catalog.upsert([renamed, repriced])
    report = job.run()
    assert (report.encoded, report.unchanged) == (1, 1)
    assert setup.encoder.texts == [item_text(renamed)]
    vector = setup.store.load_many(["i1"])[0][0]
    np.testing.assert_allclose(vector, setup.base.predict([item_text(renamed)])[0], atol=1e-6)


def test_deleted_items_leave_the_store_and_the_index(setup: Setup) -> None:
    setup.catalog.upsert(items())
    job = setup.job()
    job.run()
    setup.catalog.delete(["i0", "i5"])
    report = job.run()
    assert report.removed == 2
    assert "i0" not in setup.index
    assert "i0" not in job
    _, found = setup.store.load_many(["i0", "i5", "i1"])
    assert found.tolist() == [False, False, True]


def test_a_restarted_job_loads_the_index_from_the_store(setup: Setup) -> None:
    setup.catalog.upsert(items())
    setup.job().run()
    job = setup.job()  # a new process: fresh index, manifest from disk
    assert len(setup.index) == len(TITLES)
    assert job.run().encoded == 0
    assert setup.encoder.texts == []


def test_vectors_lost_by_the_store_are_encoded_again(setup: Setup) -> None:
    setup.catalog.upsert(items())
    setup.job().run()
    setup.store.remote.delete_many(["i4"])  # e.g. a flushed Redis
    job = setup.job()
    assert "i4" not in setup.index
    report = job.run()
    assert report.encoded == 1
    assert setup.encoder.texts == [item_text(setup.catalog.get("i4"))]
    assert "i4" in setup.index


def test_a_new_model_encodes_everything_again(setup: Setup) -> None:
    setup.catalog.upsert(items())
    setup.job().run()
    setup.catalog.delete(["i7"])
    job = setup.job(version="fine-tuned-1")
    report = job.run()
    assert report.encoded == len(TITLES) - 1
    assert "i7" not in setup.index
    assert setup.store.load_many(["i7"])[1].tolist() == [False]
    assert job.manifest.encoder == "fine-tuned-1"


def test_a_run_killed_half_way_resumes_where_it_stopped(setup: Setup) -> None:
    setup.catalog.upsert(items())
    job = setup.job(chunk=3)

    def crash(done: int, total: int) -> None:
        if done >= 6:
            raise KeyboardInterrupt  # killed after two chunks were written

    with pytest.raises(KeyboardInterrupt):
        job.run(crash)
    resumed = setup.job(chunk=3)
    report = resumed.run()
    assert report.encoded == len(TITLES) - 6
    assert len(resumed) == len(setup.index) == len(TITLES)
