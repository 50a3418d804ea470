"""The contract every ``TextEncoder`` meets: the shipped int8 ONNX model, the torch model
and a fine-tuned fp32 export, each run through the same tests.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from hotshelf.errors import ValidationError
from hotshelf.models import EMBEDDING_DIM, OnnxTextEncoder, TextEncoder, TorchTextEncoder

from .conftest import DATA

# Texts of very different token counts, in no length order, so bucketing reorders them.
TEXTS = [
    "Organic Fuji Apples, 3 lb bag, crisp and sweet, grown in Washington state orchards",
    "milk",
    "cordless drill",
    "Stainless steel 12-inch frying pan with glass lid",
    "",
    "kids winter jacket waterproof hooded",
    "AA batteries 24 pack",
    "banana",
]


# The fixture holding each runtime.
RUNTIMES = {
    "onnx-int8": "onnx_encoder",
    "torch-fp32": "torch_encoder",
    "fine-tuned-onnx-fp32": "finetuned_encoder",
}


@pytest.fixture(params=list(RUNTIMES))
def encoder(request: pytest.FixtureRequest) -> TextEncoder:
    runtime: TextEncoder = request.getfixturevalue(RUNTIMES[request.param])
    return runtime


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_embeddings_are_float32_unit_vectors_one_per_text(encoder: TextEncoder) -> None:
    vectors = encoder.predict(TEXTS)
    assert vectors.shape == (len(TEXTS), EMBEDDING_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_text_embeds_the_same_in_any_batch_and_in_input_order(
    encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 3 over 8 texts sorted by length: every batch mixes texts from all over the list.
    monkeypatch.setattr(encoder, "batch_size", 3)
    batched = encoder.predict(TEXTS)
    alone = np.vstack([encoder.predict([text]) for text in TEXTS])
    # Padding up to longer batch-mates moves fp32 arithmetic in the last digits only; a
    # per-call activation scale (dynamic quantisation) would move it by ~1e-2.
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_an_empty_list_gives_an_empty_matrix(encoder: TextEncoder) -> None:
    vectors = encoder.predict([])
    assert vectors.shape == (0, EMBEDDING_DIM)
    assert vectors.dtype == np.float32


def test_text_past_max_length_is_truncated(encoder: TextEncoder) -> None:
    long_text = "cordless drill with two batteries and a charger " * 40
    assert encoder.tokenizer.token_counts([long_text]) == [encoder.max_length]
    # What lies past the token limit cannot change the embedding.
    a, b = encoder.predict([long_text, long_text + " banana " * 200])
    assert cosine(a, b) > 0.9999


def test_predictions_are_deterministic(encoder: TextEncoder) -> None:
    np.testing.assert_array_equal(encoder.predict(TEXTS), encoder.predict(TEXTS))


def test_a_drill_is_nearer_a_drill_than_a_banana(encoder: TextEncoder) -> None:
    cordless, power, banana = encoder.predict(["cordless drill", "power drill", "banana"])
    assert cosine(cordless, power) > cosine(cordless, banana) + 0.2


def test_items_that_are_not_strings_are_refused_by_position(encoder: TextEncoder) -> None:
    with pytest.raises(ValidationError) as caught:
        encoder.predict(["fine", 3, None])  # type: ignore[list-item]
    assert [p.path for p in caught.value.problems] == ["$[1]", "$[2]"]
    with pytest.raises(ValidationError, match="not one string"):
        encoder.predict("one string")


def test_name_and_version_say_which_model(encoder: TextEncoder) -> None:
    assert encoder.name.startswith("all-MiniLM-L6-v2")
    kind, _, digest = encoder.version.rpartition("-")
    assert kind in {"onnx-int8", "onnx-fp32", "torch-fp32"}
    assert len(digest) == 12
    int(digest, 16)


def test_int8_onnx_agrees_with_fp32_torch_on_real_product_titles(
    onnx_encoder: OnnxTextEncoder, torch_encoder: TorchTextEncoder
) -> None:
    products = DATA / "instacart" / "products.csv"
    if not products.is_file():
        pytest.skip(f"{products} is absent: the real-data agreement check needs ../shared/data")
    with products.open(newline="") as f:
        titles = [row["product_name"] for row in csv.DictReader(f)][::100][:300]
    cosines = (onnx_encoder.predict(titles) * torch_encoder.predict(titles)).sum(axis=1)
    assert cosines.mean() >= 0.95
    assert cosines.min() >= 0.9
