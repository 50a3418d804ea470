"""``ImageFusion`` and the job with photos: the fused inner product is exactly the
weighted blend of text and photo cosines, a query scores the text cosine alone, every
kind of unusable photo leaves its item text-only (counted by reason), and the job
re-encodes an item whose photo file changed, and nothing else."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hotshelf.catalog import CatalogView
from hotshelf.config import LogConfig
from hotshelf.embeddings import (
    EmbeddingJob,
    ExactIndex,
    ImageFusion,
    LocalTier,
    MmapTier,
    Photo,
    TwoTierStore,
)
from hotshelf.errors import ValidationError
from hotshelf.events import CatalogChange, CatalogOp, Item, encode_catalog_change
from hotshelf.log import FileLog
from hotshelf.models import ImageEncoder, TextEncoder, decode_image, load_text_encoder
from tests.photos import CAT, COFFEE, MOTORCYCLE_LEFT, MOTORCYCLE_RIGHT, photo

TEXT_DIM = 384


@pytest.fixture(scope="module")
def image_encoder() -> Iterator[ImageEncoder]:
    with ImageEncoder(threads=1) as encoder:
        yield encoder


@pytest.fixture(scope="module")
def text_encoder() -> Iterator[TextEncoder]:
    encoder = load_text_encoder(threads=1)
    yield encoder
    encoder.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "bikes").mkdir(parents=True)
    for name in (CAT, COFFEE):
        shutil.copy(photo(name), folder / name)
    for name in (MOTORCYCLE_LEFT, MOTORCYCLE_RIGHT):
        shutil.copy(photo(name), folder / "bikes" / name)
    return folder


def fusion(encoder: ImageEncoder, root: Path, weight: float = 0.4, dim: int = 128,
           max_bytes: int = 20_000_000) -> ImageFusion:  # fmt: skip
    return ImageFusion(encoder, root, weight=weight, dim=dim, text_dim=TEXT_DIM,
                       max_bytes=max_bytes)  # fmt: skip


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("dim", [128, 1280])
def test_a_fused_inner_product_is_the_weighted_blend_of_the_two_cosines(
    image_encoder: ImageEncoder, root: Path, dim: int
) -> None:
    weight = 0.3
    fused = fusion(image_encoder, root, weight, dim)
    names = [CAT, COFFEE, f"bikes/{MOTORCYCLE_LEFT}", f"bikes/{MOTORCYCLE_RIGHT}", None]
    items = [Item(item_id=f"i{n}", title="x", image=name) for n, name in enumerate(names)]
    photos = [fused.locate(item) for item in items]
    assert [p is None for p in photos] == [False, False, False, False, True]
    text = unit(np.random.default_rng(1).standard_normal((len(items), TEXT_DIM))).astype(
        np.float32
    )
    vectors = fused.fuse([i.item_id for i in items], text, photos)
    assert vectors.shape == (len(items), TEXT_DIM + dim) == (len(items), fused.dim)
    text_half, photo_half = vectors[:, :TEXT_DIM], vectors[:, TEXT_DIM:]
    np.testing.assert_allclose(text_half, text * np.sqrt(1 - weight), rtol=1e-6)
    assert not photo_half[4].any()  # no photo: a zero half, not a guess
    photo_unit = photo_half[:4] / np.sqrt(weight)
    np.testing.assert_allclose(np.linalg.norm(photo_unit, axis=1), 1.0, atol=1e-5)
    blend = (1 - weight) * (text @ text.T)
    blend[:4, :4] += weight * (photo_unit @ photo_unit.T)
    np.testing.assert_allclose(vectors @ vectors.T, blend, atol=1e-5)
    # the rotation keeps photo cosines: two views of the motorcycle stay alike
    full = image_encoder.predict([decode_image(p.path.read_bytes()) for p in photos[:4]])
    assert abs((photo_unit @ photo_unit.T)[2, 3] - (full @ full.T)[2, 3]) < 0.1
    assert (photo_unit @ photo_unit.T)[2, 3] > 0.8
    # a query scores every item by the text cosine alone, photo or not
    query = fused.query(text[:1])
    np.testing.assert_allclose(vectors @ query[0], text @ text[0], atol=1e-5)


def test_the_rotation_is_the_same_every_time(image_encoder: ImageEncoder, root: Path) -> None:
    item = Item(item_id="a", title="x", image=CAT)
    text = np.zeros((1, TEXT_DIM), dtype=np.float32)
    made = [fusion(image_encoder, root) for _ in range(2)]
    first, again = (f.fuse(["a"], text, [f.locate(item)]) for f in made)
    np.testing.assert_array_equal(first, again)
    assert fusion(image_encoder, root).version != fusion(image_encoder, root, weight=0.5).version
    assert fusion(image_encoder, root).version != fusion(image_encoder, root, dim=64).version


def test_unusable_photos_leave_the_item_text_only_and_are_counted(
    image_encoder: ImageEncoder, root: Path, tmp_path: Path
) -> None:
    (root / "notes.png").write_text("not a picture")
    (tmp_path / "secret.png").write_bytes(photo(CAT).read_bytes())
    (root / "folder.png").mkdir()
    big = root / "big.png"
    shutil.copy(photo(COFFEE), big)
    fused = fusion(image_encoder, root, max_bytes=big.stat().st_size - 1)
    cases = {
        "missing": "gone.png",
        "outside_root": "../secret.png",
        "not_a_file": "https://cdn.example.com/a.png",
        "too_large": "big.png",
        "unreadable": "notes.png",
    }
    items = [Item(item_id=reason, title="x", image=name) for reason, name in cases.items()]
    items.append(Item(item_id="folder", title="x", image="folder.png"))
    photos = [fused.locate(item) for item in items]
    # the first four are refused on sight; an undecodable file only when it is read
    assert [p is not None for p in photos] == [False, False, False, False, True, False]
    text = unit(np.ones((len(items), TEXT_DIM), dtype=np.float32))
    vectors = fused.fuse([i.item_id for i in items], text, photos)
    assert not vectors[:, TEXT_DIM:].any()
    assert fused.problems == {"missing": 2, "outside_root": 1, "not_a_file": 1,
                              "too_large": 1, "unreadable": 1}  # fmt: skip


def test_a_file_that_grows_past_the_limit_after_it_was_found_is_refused(
    image_encoder: ImageEncoder, root: Path
) -> None:
    fused = fusion(image_encoder, root, max_bytes=photo(CAT).stat().st_size)
    item = Item(item_id="a", title="x", image=CAT)
    found = fused.locate(item)
    assert isinstance(found, Photo)
    with (root / CAT).open("ab") as f:
        f.write(b"\0" * 10)
    vectors = fused.fuse(["a"], np.zeros((1, TEXT_DIM), dtype=np.float32), [found])
    assert not vectors.any()
    assert fused.problems == {"too_large": 1}


def test_settings_out_of_range_are_refused(image_encoder: ImageEncoder, root: Path) -> None:
    for weight in (0.0, 1.0, -0.1):
        with pytest.raises(ValidationError, match="weight"):
            fusion(image_encoder, root, weight=weight)
    for dim in (0, 1281):
        with pytest.raises(ValidationError, match="dim"):
            fusion(image_encoder, root, dim=dim)


# -- the job ------------------------------------------------------------------------------


class Catalog:
    def __init__(self, path: Path) -> None:
        self.log = FileLog(path, LogConfig(fsync=False))
        self.view = CatalogView(self.log)

    def upsert(self, *items: Item) -> None:
        changes = [CatalogChange(op=CatalogOp.UPSERT, item_id=i.item_id, received_ms=1, item=i)
                   for i in items]  # fmt: skip
        self.log.append([encode_catalog_change(change) for change in changes])


def job_for(catalog: Catalog, text: TextEncoder, images: ImageFusion | None, tmp: Path
            ) -> tuple[EmbeddingJob, TwoTierStore]:  # fmt: skip
    dim = TEXT_DIM if images is None else images.dim
    store = TwoTierStore(LocalTier(dim, 100), MmapTier(tmp / f"vectors-{dim}", dim))
    job = EmbeddingJob(catalog.view, catalog.log, text, store, ExactIndex(dim), tmp / "emb",
                       images=images)  # fmt: skip
    job.load_index()
    return job, store


def test_the_job_re_encodes_an_item_whose_photo_changed_and_no_other(
    image_encoder: ImageEncoder, text_encoder: TextEncoder, root: Path, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "catalog")
    items = [Item(item_id="cat", title="Poster", image=CAT),
             Item(item_id="cup", title="Poster", image=COFFEE),
             Item(item_id="plain", title="Poster")]  # fmt: skip
    catalog.upsert(*items)
    fused = fusion(image_encoder, root)
    job, store = job_for(catalog, text_encoder, fused, tmp_path)
    try:
        assert job.run().encoded == 3
        assert job.version == f"{text_encoder.version}+{fused.version}"
        before = store.get_many(["cat", "cup"]).vectors.copy()
        # the same records again: nothing changed, nothing encoded
        catalog.upsert(*items)
        assert job.run().encoded == 0
        # the cat's file is replaced by the motorcycle (the record is sent again)
        shutil.copy(root / "bikes" / MOTORCYCLE_LEFT, root / CAT)
        os.utime(root / CAT, ns=(1, 1))
        catalog.upsert(*items)
        report = job.run()
        assert (report.encoded, report.unchanged) == (1, 2)
        after = store.get_many(["cat", "cup"]).vectors
        np.testing.assert_array_equal(after[1], before[1])
        assert not np.allclose(after[0, TEXT_DIM:], before[0, TEXT_DIM:])
        np.testing.assert_allclose(after[0, :TEXT_DIM], before[0, :TEXT_DIM], atol=1e-6)
    finally:
        store.close()
        catalog.log.close()


def test_turning_photos_on_encodes_everything_again(
    image_encoder: ImageEncoder, text_encoder: TextEncoder, root: Path, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "catalog")
    catalog.upsert(Item(item_id="cat", title="Poster", image=CAT), Item(item_id="b", title="Mug"))
    job, store = job_for(catalog, text_encoder, None, tmp_path)
    try:
        assert job.run().encoded == 2
    finally:
        store.close()
    job, store = job_for(catalog, text_encoder, fusion(image_encoder, root), tmp_path)
    try:
        assert job.run().encoded == 2  # a new version: every item again
        assert job.run().encoded == 0
        vectors = store.get_many(["cat", "b"]).vectors
        assert vectors.shape == (2, TEXT_DIM + 128)
        assert vectors[0, TEXT_DIM:].any()
        assert not vectors[1, TEXT_DIM:].any()
    finally:
        store.close()
        catalog.log.close()
