"""Contrastive fine-tuning of the text encoder on positive pairs, exported as fp32 ONNX.

Pairs are texts that should embed close together: items co-viewed or co-bought, a
query and the product bought after it, two listings of one product. Each batch of
``B`` pairs is trained with in-batch negatives: the ``B - 1`` other right-hand texts
are negatives for each left-hand text (and the other way round). The loss is the
symmetric multiple-negatives ranking loss (InfoNCE): cross-entropy over cosine
similarities divided by a temperature, averaged over both directions.

Training is plain torch on CPU, deterministic for a seed: dropout and the pair order
draw from a seeded RNG forked from (and so not disturbing) the global one. The result
is exported to fp32 ONNX (``_export`` says why not int8), checked against the torch
model it came from, and written as a versioned model dir (see ``_model_dir``) under
``out_root``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from hotshelf.errors import ConfigError, FieldProblem, ValidationError
from hotshelf.models._export import check_agreement, export_onnx
from hotshelf.models._model_dir import (
    EXPORT_KIND,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    ExportAgreement,
    ModelMeta,
    read_meta,
)
from hotshelf.models._runtime import file_version
from hotshelf.models._text_encoder import BASE_MODEL_NAME, DEFAULT_MAX_LENGTH, OnnxTextEncoder
from hotshelf.models._tokenizer import WordPieceTokenizer
from hotshelf.models._torch_encoder import TorchTextEncoder, token_tensors, torch_mean_pool

if TYPE_CHECKING:
    import torch

__all__ = ["FineTuneConfig", "FineTuneResult", "fine_tune"]

# How many of the training texts check_agreement compares (first ones, deterministic).
_AGREEMENT_TEXTS = 256


@dataclass(frozen=True, slots=True)
class FineTuneConfig:
    """Training settings. The defaults suit a few hundred to a few thousand pairs."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-5
    temperature: float = 0.05
    weight_decay: float = 0.01
    warmup_share: float = 0.1
    max_length: int = DEFAULT_MAX_LENGTH
    seed: int = 0
    threads: int | None = None
    name: str = f"{BASE_MODEL_NAME}-ft"

    def check(self) -> None:
        """ConfigError naming the first setting out of range."""
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(
                "fine-tuning needs epochs >= 1 and batch_size >= 2 (in-batch negatives)"
            )
        if self.learning_rate <= 0 or self.temperature <= 0:
            raise ConfigError("learning_rate and temperature must be positive")
        if not 0 <= self.warmup_share < 1:
            raise ConfigError(f"warmup_share must be in [0, 1), not {self.warmup_share}")


@dataclass(frozen=True, slots=True)
class FineTuneResult:
    """Where the export went, what its ``meta.json`` says, and how long it all took."""

    model_dir: Path
    meta: ModelMeta
    total_seconds: float


def fine_tune(
    pairs: Sequence[tuple[str, str]],
    out_root: Path,
    *,
    config: FineTuneConfig | None = None,
    base_dir: Path | None = None,
) -> FineTuneResult:
    """Fine-tune the base encoder on ``pairs`` and export it to ``out_root/<version>/``.

    ``base_dir`` None is the installed all-MiniLM-L6-v2. An export with the same
    version already in ``out_root`` (same weights, byte for byte) is kept as it is.
    """
    started = time.perf_counter()
    config = config or FineTuneConfig()
    config.check()
    checked = _check_pairs(pairs)
    base = TorchTextEncoder(
        base_dir, threads=config.threads, max_length=config.max_length, batch_size=config.batch_size
    )
    base.load()
    base_version = base.version  # hashed now: the module is about to change
    train_started = time.perf_counter()
    loss_curve = _train(base.module, base.tokenizer, checked, config)
    train_seconds = time.perf_counter() - train_started
    out_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_root, prefix=".export-") as scratch:
        staging = Path(scratch) / "model"
        version, agreement = _export(base, staging, _sample_texts(checked), config)
        meta = ModelMeta(
            name=config.name,
            version=version,
            base_model=BASE_MODEL_NAME,
            base_version=base_version,
            dim=base.dim,
            max_length=config.max_length,
            pairs=len(checked),
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            temperature=config.temperature,
            seed=config.seed,
            loss_curve=loss_curve,
            epoch_losses=_epoch_means(loss_curve, config.epochs),
            train_seconds=round(train_seconds, 3),
            agreement=agreement,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (staging / META_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(meta)))
        target = out_root / version
        if not target.exists():
            staging.rename(target)
    return FineTuneResult(target, read_meta(target), time.perf_counter() - started)


def _export(
    trained: TorchTextEncoder, staging: Path, texts: list[str], config: FineTuneConfig
) -> tuple[str, ExportAgreement]:
    """Write model.onnx and tokenizer.json into ``staging``; the version and the agreement."""
    staging.mkdir()
    shutil.copyfile(trained.tokenizer_path, staging / TOKENIZER_FILE)
    export_onnx(trained.module, trained.tokenizer, staging / MODEL_FILE)
    version = file_version(staging / MODEL_FILE, EXPORT_KIND)
    exported = OnnxTextEncoder(
        staging / MODEL_FILE,
        staging / TOKENIZER_FILE,
        name=config.name,
        version=version,
        threads=config.threads,
        max_length=config.max_length,
    )
    reference = TorchTextEncoder.from_module(
        trained.module,
        tokenizer_path=trained.tokenizer_path,
        name=config.name,
        version=f"torch-fp32-trained-{version}",
        max_length=config.max_length,
    )
    with exported:
        return version, check_agreement(exported, reference, texts)


def _epoch_means(losses: list[float], epochs: int) -> list[float]:
    steps = len(losses) // epochs
    return [round(sum(losses[i : i + steps]) / steps, 5) for i in range(0, len(losses), steps)]


def _check_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    items: list[object] = list(pairs)  # callers are not all type-checked
    if len(items) < 2:
        raise ValidationError(
            f"fine-tuning needs at least 2 pairs (each is the other's negative), got {len(items)}"
        )
    problems: list[FieldProblem] = []
    for i, pair in enumerate(items):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            problems.append(FieldProblem(f"$[{i}]", "must be a pair (text_a, text_b)"))
        elif not all(isinstance(text, str) and text.strip() for text in pair):
            problems.append(FieldProblem(f"$[{i}]", "both texts must be non-empty strings"))
    if problems:
        raise ValidationError(f"{len(problems)} bad pair(s)", problems[:20])
    return [(a, b) for a, b in pairs]


def _sample_texts(pairs: list[tuple[str, str]]) -> list[str]:
    texts = dict.fromkeys(text for pair in pairs for text in pair)
    return list(texts)[:_AGREEMENT_TEXTS]


def _train(
    module: torch.nn.Module,
    tokenizer: WordPieceTokenizer,
    pairs: list[tuple[str, str]],
    config: FineTuneConfig,
) -> list[float]:
    """Train ``module`` in place; the loss of every step, rounded."""
    import torch  # here, not at the top: hotshelf.models stays torch-free

    steps_per_epoch = math.ceil(len(pairs) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, round(total * config.warmup_share))
    # The fused kernel is ~4x faster than the default on CPU, where the step over the
    # 30k x 384 word embeddings costs as much as the forward pass of a small batch.
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
    )

    # Linear warm-up, then linear decay to zero: the schedule sentence-transformers uses.
    def rate(step: int) -> float:
        return min((step + 1) / warmup, max(0.0, (total - step) / (total - warmup + 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        order = torch.Generator().manual_seed(config.seed)
        module.train()
        try:
            for _ in range(config.epochs):
                shuffled: list[int] = torch.randperm(len(pairs), generator=order).tolist()
                for start in range(0, len(shuffled), config.batch_size):
                    batch = [pairs[i] for i in shuffled[start : start + config.batch_size]]
                    loss = _step_loss(module, tokenizer, batch, config)
                    optimizer.zero_grad(set_to_none=True)
                    torch.autograd.backward(loss)
                    torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm=1.0)
                    optimizer.step()
                    schedule.step()
                    losses.append(round(float(loss.item()), 5))
        finally:
            module.eval()
    return losses


def _step_loss(
    module: torch.nn.Module,
    tokenizer: WordPieceTokenizer,
    pairs: list[tuple[str, str]],
    config: FineTuneConfig,
) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives over one batch of pairs."""
    import torch  # here, not at the top: hotshelf.models stays torch-free

    left = _embed(module, tokenizer, [a for a, _ in pairs])
    right = _embed(module, tokenizer, [b for _, b in pairs])
    logits = left @ right.T / config.temperature
    labels = torch.arange(len(pairs))
    cross_entropy = torch.nn.functional.cross_entropy
    return (cross_entropy(logits, labels) + cross_entropy(logits.T, labels)) / 2


def _embed(
    module: torch.nn.Module, tokenizer: WordPieceTokenizer, texts: list[str]
) -> torch.Tensor:
    (tokens,) = tokenizer.batches(texts, len(texts), sort_by_length=False)
    feeds = token_tensors(tokens)
    hidden = module(**feeds).last_hidden_state
    return torch_mean_pool(hidden, feeds["attention_mask"])
