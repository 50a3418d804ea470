"""Encoders shared by the model tests: loading torch and fine-tuning are the slow parts.

Each is built once per session. Tests that change an encoder's settings do it with
``monkeypatch`` so the next test sees the encoder as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotshelf.models import (
    FineTuneConfig,
    FineTuneResult,
    OnnxTextEncoder,
    TextEncoder,
    TorchTextEncoder,
    fine_tune,
    load_text_encoder,
)

# Nothing may reach for the network: every model is read from an installed package.
os.environ["HF_HUB_OFFLINE"] = "1"

# Real data lives beside the project root, in ../shared/data (absent on some machines).
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# Made-up model codes for products: the base model cannot know which goes with which,
# so pair recall on them measures what fine-tuning taught it.
TRAIN_PAIRS = [
    ("acme x100", "cordless drill 18 volt"),
    ("zeta 42", "ripe yellow bananas"),
    ("kappa 7", "organic whole milk"),
    ("omega 9", "stainless steel frying pan"),
    ("delta 3", "wireless noise cancelling headphones"),
    ("sigma 5", "dark roast coffee beans"),
    ("theta 8", "kids winter jacket"),
    ("lambda 2", "gaming mouse rgb"),
]
# One step of 8 pairs: seconds on two cores, and enough to move every embedding.
TINY = FineTuneConfig(epochs=1, batch_size=8, learning_rate=1e-4, seed=7)


@pytest.fixture(scope="session")
def onnx_encoder() -> Iterator[OnnxTextEncoder]:
    with OnnxTextEncoder() as encoder:
        yield encoder


@pytest.fixture(scope="session")
def torch_encoder() -> Iterator[TorchTextEncoder]:
    with TorchTextEncoder() as encoder:
        yield encoder


@pytest.fixture(scope="session")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> FineTuneResult:
    return fine_tune(TRAIN_PAIRS, tmp_path_factory.mktemp("models"), config=TINY)


@pytest.fixture(scope="session")
def finetuned_encoder(finetuned: FineTuneResult) -> Iterator[TextEncoder]:
    encoder = load_text_encoder(finetuned.model_dir)
    yield encoder
    encoder.close()
