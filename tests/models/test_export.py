"""The fp32 ONNX export, and the check that an export computes what its torch model does."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotshelf.errors import HotshelfError
from hotshelf.models import OnnxTextEncoder, TorchTextEncoder
from hotshelf.models._export import MIN_EXPORT_COSINE, check_agreement, export_onnx

from .conftest import TRAIN_PAIRS

TEXTS = [text for pair in TRAIN_PAIRS for text in pair]


def test_an_export_agrees_with_its_torch_model(
    torch_encoder: TorchTextEncoder, tmp_path: Path
) -> None:
    export_onnx(torch_encoder.module, torch_encoder.tokenizer, tmp_path / "model.onnx")
    with OnnxTextEncoder(tmp_path / "model.onnx", threads=1) as exported:
        agreement = check_agreement(exported, torch_encoder, TEXTS)
    assert agreement.texts == len(TEXTS)
    assert MIN_EXPORT_COSINE <= agreement.min_cosine <= agreement.mean_cosine <= 1.0


def test_a_quantised_model_does_not_pass_for_an_export(
    onnx_encoder: OnnxTextEncoder, torch_encoder: TorchTextEncoder
) -> None:
    # The shipped model is the torch model with its weights rounded to int8: close, not equal.
    with pytest.raises(HotshelfError, match="min cosine"):
        check_agreement(onnx_encoder, torch_encoder, TEXTS)


def test_an_export_that_disagrees_with_its_model_fails_loudly(
    onnx_encoder: OnnxTextEncoder,
) -> None:
    # Three tokens leave room for one word: not the function the full encoder computes.
    with (
        OnnxTextEncoder(max_length=3) as clipped,
        pytest.raises(HotshelfError, match="min cosine"),
    ):
        check_agreement(clipped, onnx_encoder, TEXTS)
