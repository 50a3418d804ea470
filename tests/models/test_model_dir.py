"""Exported model dirs: ``load_text_encoder`` and the checks ``read_meta`` makes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from hotshelf.errors import ConfigError
from hotshelf.models import FineTuneResult, OnnxTextEncoder, load_text_encoder

from .conftest import TRAIN_PAIRS

TEXTS = [b for _, b in TRAIN_PAIRS]


def test_load_text_encoder_refuses_missing_and_damaged_dirs(
    finetuned: FineTuneResult, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_text_encoder(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"lacks model\.onnx, tokenizer\.json, meta\.json"):
        load_text_encoder(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(finetuned.model_dir, copy)
    (copy / "meta.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad meta\.json"):
        load_text_encoder(copy)
    shutil.copy(finetuned.model_dir / "meta.json", copy / "meta.json")
    model = bytearray((copy / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(model))
    with pytest.raises(ConfigError, match="changed or damaged after export"):
        load_text_encoder(copy)


def test_an_unreadable_model_with_a_matching_meta_fails_on_load(
    finetuned: FineTuneResult, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(finetuned.model_dir, copy)
    (copy / "model.onnx").write_bytes(b"not a model")
    meta = msgspec.json.decode((copy / "meta.json").read_bytes())
    meta["version"] = "onnx-fp32-" + hashlib.sha256(b"not a model").hexdigest()[:12]
    (copy / "meta.json").write_bytes(msgspec.json.encode(meta))
    with pytest.raises(ConfigError, match="cannot load ONNX model"):
        load_text_encoder(copy)


def test_load_text_encoder_without_a_dir_is_the_shipped_model(
    onnx_encoder: OnnxTextEncoder,
) -> None:
    encoder = load_text_encoder(threads=1)
    try:
        assert encoder.version == onnx_encoder.version
        np.testing.assert_allclose(encoder.predict(TEXTS), onnx_encoder.predict(TEXTS), atol=1e-5)
    finally:
        encoder.close()
