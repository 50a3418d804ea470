"""Exported model dirs and ``load_text_encoder``.

A fine-tuned encoder is exported as one directory named after its version::

    <root>/onnx-fp32-3f1c0d9a2b7e/
        model.onnx       fp32 ONNX: input_ids, attention_mask, token_type_ids -> last_hidden_state
        tokenizer.json   the tokenizer it was trained with
        meta.json        ModelMeta: version, base model, training settings, loss curve, ...

The version is the sha256 prefix of ``model.onnx``, checked on load, so a dir whose
model was swapped or damaged after export is refused rather than served under the
wrong version.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from hotshelf.errors import ConfigError
from hotshelf.models._runtime import file_version
from hotshelf.models._text_encoder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    OnnxTextEncoder,
    TextEncoder,
)

__all__ = ["EXPORT_KIND", "ExportAgreement", "ModelMeta", "load_text_encoder", "read_meta"]

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
# The kind part of an export's version: what file format and weight type it holds.
EXPORT_KIND = "onnx-fp32"


class ExportAgreement(msgspec.Struct, frozen=True):
    """Cosine between the exported ONNX model and the torch model it came from, on sample texts."""

    texts: int
    mean_cosine: float
    min_cosine: float


class ModelMeta(msgspec.Struct, frozen=True):
    """``meta.json`` of an exported encoder."""

    name: str
    version: str
    base_model: str
    base_version: str
    dim: int
    max_length: int
    pairs: int
    epochs: int
    batch_size: int
    learning_rate: float
    temperature: float
    seed: int
    loss_curve: list[float]
    epoch_losses: list[float]
    train_seconds: float
    agreement: ExportAgreement
    created_at: str
    format: int = 1


def read_meta(model_dir: Path) -> ModelMeta:
    """The checked ``meta.json`` of an export; ConfigError if the dir is missing or damaged."""
    if not model_dir.is_dir():
        raise ConfigError(f"model dir {model_dir} does not exist")
    missing = [f for f in (MODEL_FILE, TOKENIZER_FILE, META_FILE) if not (model_dir / f).is_file()]
    if missing:
        raise ConfigError(f"model dir {model_dir} lacks {', '.join(missing)}")
    try:
        meta = msgspec.json.decode((model_dir / META_FILE).read_bytes(), type=ModelMeta)
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"bad {META_FILE} in {model_dir}: {exc}") from exc
    actual = file_version(model_dir / MODEL_FILE, EXPORT_KIND)
    if actual != meta.version:
        raise ConfigError(
            f"{model_dir / MODEL_FILE} is version {actual} but {META_FILE} says {meta.version}:"
            " the model file was changed or damaged after export"
        )
    return meta


def load_text_encoder(
    model_dir: Path | None = None,
    *,
    threads: int | None = None,
    max_length: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TextEncoder:
    """A loaded ONNX encoder: the shipped int8 model for None, else the export in ``model_dir``.

    ``max_length`` defaults to the length the export was trained with (128 for the shipped model).
    """
    if model_dir is None:
        encoder = OnnxTextEncoder(
            threads=threads, max_length=max_length or DEFAULT_MAX_LENGTH, batch_size=batch_size
        )
    else:
        meta = read_meta(model_dir)
        encoder = OnnxTextEncoder(
            model_dir / MODEL_FILE,
            model_dir / TOKENIZER_FILE,
            name=meta.name,
            threads=threads,
            max_length=max_length or meta.max_length,
            batch_size=batch_size,
            version=meta.version,  # read_meta has just checked it against the file
        )
    encoder.load()
    return encoder
