"""Export a torch encoder to fp32 ONNX, and check the export computes what the torch model does.

The export uses torch's TorchScript-based exporter (``dynamo=False``): the newer
``torch.export`` exporter needs the ``onnxscript`` package, and the traced graph is
checked against the torch model anyway. The TorchScript exporter still needs the
``onnx`` package to write its file; serving an export needs only onnxruntime.

Exports stay fp32 because an embedding must not depend on what it was encoded with:
the embedding job re-encodes single changed items, which must match a bulk run.
onnxruntime's ``quantize_dynamic``, which exports used before, also quantises
activations with one scale per call, so a text's vector moved with its batch-mates
(cosine 0.97-0.99 to the same text encoded alone) in exchange for 2-2.5x the items/s
of the shipped model (``benchmarks._embedding_encode`` still measures it). The shipped
int8 model is weight-only: it casts its weights back to float on every call and
computes in fp32. An fp32 export skips that cast: just as batch-independent, equal to
its torch model to rounding (cosine 0.9999999), a little faster (~1.4x the items/s on
2 cores), and four times larger on disk (~90 MB).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hotshelf.errors import HotshelfError
from hotshelf.models._model_dir import ExportAgreement
from hotshelf.models._text_encoder import TextEncoder
from hotshelf.models._tokenizer import WordPieceTokenizer
from hotshelf.models._torch_encoder import token_tensors

if TYPE_CHECKING:
    import torch

__all__ = ["MIN_EXPORT_COSINE", "check_agreement", "export_onnx"]

# Below this cosine on any text the export is not the model that was trained. An fp32
# export agrees to rounding (0.9999999); even weight-only int8 falls short (~0.9994).
MIN_EXPORT_COSINE = 0.9999
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUT = "last_hidden_state"
# ONNX opset 17 has LayerNormalization as one operator, which onnxruntime fuses well.
_OPSET = 17


def export_onnx(module: torch.nn.Module, tokenizer: WordPieceTokenizer, path: Path) -> None:
    """Write ``module`` (a BertModel) to ``path`` as fp32 ONNX with dynamic batch and length."""
    import torch  # here, not at the top: hotshelf.models stays torch-free

    class LastHiddenState(torch.nn.Module):
        """The BertModel with positional inputs and one tensor out, as the exporter wants."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            out: torch.Tensor = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return out

    # Two texts of different lengths, so the traced graph sees a mask with padding in it.
    (sample,) = tokenizer.batches(["a short title", "a somewhat longer product title"], 2)
    feeds = token_tensors(sample)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, _OUTPUT)}
    wrapper = LastHiddenState(module).eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated and its tracer warns about Python branches
        # on tensor values; check_agreement() is what tells whether the trace is right.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(feeds[name] for name in _INPUTS),
            str(path),
            input_names=list(_INPUTS),
            output_names=[_OUTPUT],
            dynamic_axes=dynamic,
            opset_version=_OPSET,
            dynamo=False,
        )


def check_agreement(
    exported: TextEncoder, reference: TextEncoder, texts: Sequence[str]
) -> ExportAgreement:
    """Cosine per text between the two encoders; HotshelfError if any is under 0.9999."""
    cosines = (exported.predict(texts) * reference.predict(texts)).sum(axis=1)
    agreement = ExportAgreement(
        texts=len(texts),
        mean_cosine=round(float(np.mean(cosines)), 5),
        min_cosine=round(float(np.min(cosines)), 5),
    )
    # The minimum, not the mean: one text the trace gets wrong is a wrong export.
    if agreement.min_cosine < MIN_EXPORT_COSINE:
        raise HotshelfError(
            f"the ONNX export does not match the torch model: min cosine"
            f" {agreement.min_cosine:.4f} (mean {agreement.mean_cosine:.4f}) over"
            f" {len(texts)} texts, below {MIN_EXPORT_COSINE}"
        )
    return agreement
