"""``ImageEncoder``: EfficientNet-Lite0 from the shipped state dict sees what real photos
show (so the network defined here is the one the weights were trained as), and its
embeddings put two views of one object together and unrelated photos apart."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from hotshelf.errors import UnavailableError, ValidationError
from hotshelf.models import IMAGE_EMBEDDING_DIM, ImageEncoder, decode_image
from tests.photos import CAT, COFFEE, MOTORCYCLE_LEFT, MOTORCYCLE_RIGHT, OTHERS, photo

# ImageNet classes
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CUPS = {504, 967, 968}  # coffee mug, espresso, cup
TWO_WHEELERS = {665, 670}  # moped, motor scooter


@pytest.fixture(scope="module")
def encoder() -> Iterator[ImageEncoder]:
    with ImageEncoder(threads=1) as model:
        yield model


def load(name: str) -> Image.Image:
    return decode_image(photo(name).read_bytes())


def top(encoder: ImageEncoder, name: str, k: int) -> list[int]:
    with torch.inference_mode():
        logits = encoder.network(torch.from_numpy(encoder.pixels([load(name)])))
    return [int(i) for i in logits[0].topk(k).indices]


def test_the_network_names_what_real_photos_show(encoder: ImageEncoder) -> None:
    assert top(encoder, CAT, 1)[0] in CATS
    assert len(CATS & set(top(encoder, CAT, 5))) >= 2
    assert top(encoder, COFFEE, 1)[0] in COFFEE_CUPS
    assert set(top(encoder, MOTORCYCLE_LEFT, 3)) >= TWO_WHEELERS


def test_two_views_of_one_object_are_near_and_unrelated_photos_apart(
    encoder: ImageEncoder,
) -> None:
    names = [MOTORCYCLE_LEFT, MOTORCYCLE_RIGHT, *OTHERS]
    vectors = encoder.predict([load(n) for n in names])
    assert vectors.shape == (len(names), IMAGE_EMBEDDING_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = vectors @ vectors.T
    same = cosines[0, 1]
    others = cosines[np.triu_indices(len(names), 1)][1:]  # every pair but the motorcycles
    assert same > 0.8
    assert same > others.max() + 0.4
    # centred features: unrelated photos score near zero, not all alike
    assert abs(others.mean()) < 0.2


def test_a_batch_gives_each_image_what_it_gets_alone(encoder: ImageEncoder) -> None:
    images = [load(n) for n in (CAT, COFFEE, MOTORCYCLE_LEFT)]
    together = encoder.predict(images)
    alone = np.concatenate([encoder.predict([image]) for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_grey_transparent_and_small_images_are_encoded(encoder: ImageEncoder) -> None:
    cat = load(CAT)
    variants = [cat.convert("L").convert("RGB"), cat.convert("RGBA").convert("RGB"),
                cat.resize((60, 40))]  # fmt: skip
    vectors = encoder.predict(variants)
    original = encoder.predict([cat])[0]
    assert np.all(np.isfinite(vectors))
    assert (vectors @ original).min() > 0.5  # still the same cat


def test_decoding_reads_common_formats_and_refuses_what_is_not_an_image() -> None:
    cat = load(CAT)
    for fmt in ("JPEG", "PNG", "WEBP", "GIF"):
        buffer = io.BytesIO()
        cat.save(buffer, format=fmt)
        decoded = decode_image(buffer.getvalue())
        assert decoded.mode == "RGB"
        assert decoded.size[0] >= 224
        assert decoded.size[1] >= 224
    with pytest.raises(ValidationError, match="not a readable image"):
        decode_image(b"definitely not a picture")
    png = photo(CAT).read_bytes()
    with pytest.raises(ValidationError, match="not a readable image"):
        decode_image(png[: len(png) // 2])  # truncated


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")  # 81 Mpixel, a few kB
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(ValidationError, match="pixel"):
        decode_image(buffer.getvalue())


def test_predicting_leaves_the_process_thread_count_as_it_was(encoder: ImageEncoder) -> None:
    before = torch.get_num_threads()
    assert encoder.threads == 1
    encoder.predict([load(CAT)])
    assert torch.get_num_threads() == before


def test_the_runtime_life_cycle() -> None:
    encoder = ImageEncoder(threads=1)
    assert encoder.version.startswith("torch-efficientnet-lite0-")
    assert encoder.version == ImageEncoder().version  # the file's digest: stable
    with pytest.raises(UnavailableError):
        encoder.predict([load(CAT)])
    encoder.load()
    encoder.warm_up()
    assert encoder.predict([]).shape == (0, IMAGE_EMBEDDING_DIM)
    encoder.close()
    with pytest.raises(UnavailableError):
        encoder.predict([load(CAT)])
