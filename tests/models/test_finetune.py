"""Fine-tuning on a tiny set of pairs, the fp32 export it writes, and its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotshelf.errors import ConfigError, ValidationError
from hotshelf.models import (
    FineTuneConfig,
    FineTuneResult,
    OnnxTextEncoder,
    TextEncoder,
    fine_tune,
    pair_recall_at_k,
    read_meta,
)
from hotshelf.models._export import MIN_EXPORT_COSINE

from .conftest import TINY, TRAIN_PAIRS

QUERIES = [a for a, _ in TRAIN_PAIRS]
CORPUS = [b for _, b in TRAIN_PAIRS]
TRUTH = list(range(len(TRAIN_PAIRS)))


def test_the_export_is_a_versioned_dir_with_its_meta(finetuned: FineTuneResult) -> None:
    model_dir, meta = finetuned.model_dir, finetuned.meta
    assert model_dir.name == meta.version
    assert meta.version.startswith("onnx-fp32-")
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "meta.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert (meta.pairs, meta.epochs, meta.batch_size, meta.seed) == (8, 1, 8, 7)
    assert meta.base_version.startswith("torch-fp32-")
    assert len(meta.loss_curve) == 1
    assert meta.epoch_losses == meta.loss_curve
    assert meta.agreement.texts == 16
    assert meta.created_at.endswith("+00:00")
    assert read_meta(model_dir) == meta


def test_the_export_agrees_with_the_trained_torch_model(finetuned: FineTuneResult) -> None:
    # fine_tune compares the export with the module it just trained, on the pair texts.
    agreement = finetuned.meta.agreement
    assert MIN_EXPORT_COSINE <= agreement.min_cosine <= agreement.mean_cosine <= 1.0


def test_the_fine_tuned_encoder_differs_from_the_base_and_learned_the_pairs(
    onnx_encoder: OnnxTextEncoder, finetuned_encoder: TextEncoder
) -> None:
    assert finetuned_encoder.name == "all-MiniLM-L6-v2-ft"
    assert finetuned_encoder.version != onnx_encoder.version
    texts = QUERIES + CORPUS
    cosines = (onnx_encoder.predict(texts) * finetuned_encoder.predict(texts)).sum(axis=1)
    assert cosines.mean() < 0.995
    before = pair_recall_at_k(onnx_encoder, QUERIES, CORPUS, TRUTH, k=1)
    after = pair_recall_at_k(finetuned_encoder, QUERIES, CORPUS, TRUTH, k=1)
    assert after >= before + 0.25


def test_the_same_pairs_and_seed_give_the_same_version(finetuned: FineTuneResult) -> None:
    meta_bytes = (finetuned.model_dir / "meta.json").read_bytes()
    again = fine_tune(TRAIN_PAIRS, finetuned.model_dir.parent, config=TINY)
    assert again.model_dir == finetuned.model_dir
    assert again.meta.loss_curve == finetuned.meta.loss_curve
    # The export already there is kept as it was, not overwritten.
    assert (finetuned.model_dir / "meta.json").read_bytes() == meta_bytes
    assert [p.name for p in finetuned.model_dir.parent.iterdir()] == [finetuned.model_dir.name]


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        ([], "at least 2 pairs"),
        ([("a", "b")], "at least 2 pairs"),
        ([("a", "b"), ("c",), ("d", " "), ("e", 5)], "3 bad pair"),
    ],
)
def test_bad_pairs_are_validation_errors(
    tmp_path: Path, pairs: list[tuple[str, ...]], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        fine_tune(pairs, tmp_path)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "config",
    [
        FineTuneConfig(epochs=0),
        FineTuneConfig(batch_size=1),
        FineTuneConfig(temperature=0.0),
        FineTuneConfig(warmup_share=1.0),
    ],
)
def test_bad_settings_are_config_errors(tmp_path: Path, config: FineTuneConfig) -> None:
    with pytest.raises(ConfigError):
        fine_tune(TRAIN_PAIRS, tmp_path, config=config)


def test_a_missing_base_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no model\.safetensors"):
        fine_tune(TRAIN_PAIRS, tmp_path / "out", base_dir=tmp_path / "absent")
