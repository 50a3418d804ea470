"""``TorchTextEncoder``: all-MiniLM-L6-v2 in eager PyTorch (fp32), the model fine-tuning trains.

torch and ``transformers`` are imported when a model is loaded, never at import time,
so ``import hotshelf.models`` stays cheap and torch-free for the serving path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from hotshelf.errors import ConfigError
from hotshelf.models._text_encoder import (
    BASE_MODEL_NAME,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    TextEncoder,
    base_model_dir,
)
from hotshelf.models._tokenizer import TokenBatch

if TYPE_CHECKING:
    import torch

__all__ = ["TorchTextEncoder", "load_torch_model", "token_tensors", "torch_mean_pool"]

WEIGHTS_FILE = "model.safetensors"


def load_torch_model(model_dir: Path) -> torch.nn.Module:
    """The ``transformers`` BertModel in ``model_dir``, in eval mode, read from disk only."""
    from transformers import AutoModel  # here, not at the top: hotshelf.models stays torch-free
    from transformers.utils import logging as transformers_logging

    # its "Loading weights" bar is noise in a CLI; transformers leaves this one untyped
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if not (model_dir / WEIGHTS_FILE).is_file():
        raise ConfigError(f"no {WEIGHTS_FILE} in {model_dir}")
    try:
        model: torch.nn.Module = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the torch model in {model_dir}: {exc}") from exc
    return model.eval()


def token_tensors(tokens: TokenBatch) -> dict[str, torch.Tensor]:
    """A token batch as the keyword arguments of a BertModel forward pass."""
    import torch  # here, not at the top: hotshelf.models stays torch-free

    return {
        "input_ids": torch.from_numpy(tokens.input_ids),
        "attention_mask": torch.from_numpy(tokens.attention_mask),
        "token_type_ids": torch.from_numpy(tokens.token_type_ids),
    }


def torch_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean_pool`` in torch, differentiable: the masked mean of token vectors, L2-normalised."""
    import torch  # here, not at the top: hotshelf.models stays torch-free

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


class TorchTextEncoder(TextEncoder):
    """The fp32 model in eager PyTorch, from a sentence-transformers/``transformers`` dir."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        name: str = BASE_MODEL_NAME,
        threads: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """``model_dir`` None is the installed all-MiniLM-L6-v2.

        ``threads`` sets torch's intra-op thread count on load, which is process-wide.
        """
        self.model_dir = model_dir or base_model_dir()
        super().__init__(
            self.model_dir / "tokenizer.json", name=name, max_length=max_length,
            batch_size=batch_size,
        )  # fmt: skip
        self.threads = threads
        self._module: torch.nn.Module | None = None
        self._given = False

    @classmethod
    def from_module(
        cls,
        module: torch.nn.Module,
        *,
        tokenizer_path: Path,
        name: str,
        version: str,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> TorchTextEncoder:
        """An encoder over a model already in memory (e.g. just fine-tuned), loaded."""
        encoder = cls(tokenizer_path.parent, name=name, max_length=max_length)
        encoder.tokenizer_path = tokenizer_path
        encoder._module = module
        encoder._version = version
        encoder._given = True
        encoder.load()
        return encoder

    def _weights(self) -> tuple[Path, str]:
        return self.model_dir / WEIGHTS_FILE, "torch-fp32"

    @property
    def module(self) -> torch.nn.Module:
        """The loaded BertModel (for training; ``predict`` expects it back in eval mode)."""
        if self._module is None:
            raise ConfigError(f"model {self.name} is not loaded")
        return self._module

    def _load(self) -> None:
        if self.threads is not None:
            import torch  # here, not at the top: hotshelf.models stays torch-free

            torch.set_num_threads(self.threads)
        if self._module is None:
            self._module = load_torch_model(self.model_dir)
        _ = self.tokenizer  # read the tokenizer now, so a bad file fails at load, not at predict

    def _close(self) -> None:
        if not self._given:
            self._module = None

    def _hidden_states(self, tokens: TokenBatch) -> NDArray[np.float32]:
        import torch  # here, not at the top: hotshelf.models stays torch-free

        with torch.inference_mode():
            hidden = self.module(**token_tensors(tokens)).last_hidden_state
        return np.asarray(hidden.numpy(), dtype=np.float32)
