"""Model runtimes: the text encoder (ONNX for serving, torch for training), fine-tuning.

``ModelRuntime`` is the interface a model server loads, warms and calls; ``TextEncoder``
runtimes turn texts into L2-normalised float32 ``(n, 384)`` embeddings, ``ImageEncoder``
product photos into ``(n, 1280)`` ones. Importing this package never imports torch:
only ``TorchTextEncoder``, ``ImageEncoder`` and ``fine_tune`` do, when used.
"""

from hotshelf.models._evaluation import exact_top_k, pair_recall_at_k
from hotshelf.models._finetune import FineTuneConfig, FineTuneResult, fine_tune
from hotshelf.models._image_encoder import (
    IMAGE_EMBEDDING_DIM,
    ImageEncoder,
    decode_image,
    shipped_image_weights,
)
from hotshelf.models._model_dir import ExportAgreement, ModelMeta, load_text_encoder, read_meta
from hotshelf.models._runtime import ModelRuntime, file_version
from hotshelf.models._text_encoder import (
    EMBEDDING_DIM,
    OnnxTextEncoder,
    TextEncoder,
    base_model_dir,
    shipped_onnx_model,
)
from hotshelf.models._torch_encoder import TorchTextEncoder

__all__ = [
    "EMBEDDING_DIM",
    "IMAGE_EMBEDDING_DIM",
    "ExportAgreement",
    "FineTuneConfig",
    "FineTuneResult",
    "ImageEncoder",
    "ModelMeta",
    "ModelRuntime",
    "OnnxTextEncoder",
    "TextEncoder",
    "TorchTextEncoder",
    "base_model_dir",
    "decode_image",
    "exact_top_k",
    "file_version",
    "fine_tune",
    "load_text_encoder",
    "pair_recall_at_k",
    "read_meta",
    "shipped_image_weights",
    "shipped_onnx_model",
]
