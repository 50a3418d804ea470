"""``ImageFusion``: an item's photo embedding fused with its text embedding.

An item's vector is two halves: ``sqrt(1 - w)`` times its text embedding and ``sqrt(w)``
times its photo embedding (``w`` is ``embeddings.image_weight``). The inner product of
two items is then exactly

    (1 - w) * text cosine + w * photo cosine

when both have a photo, and ``(1 - w) * text cosine`` when either has none (its photo
half is zeros: no evidence, not a penalty). The index searches by inner product, so
"similar items" and the recommender's content neighbours rank by that blend.

A query (``/v1/search``, ``/v1/rank``) has no photo: its vector is the query's text
embedding divided by ``sqrt(1 - w)`` with a zero photo half, so its score against any
item is the plain text cosine, as without photos.

The photo half is the 1280-value EfficientNet-Lite0 embedding turned by a fixed random
rotation (seeded, the same on every machine) down to ``embeddings.image_dim`` values
and normalised again: inner products survive such a projection up to ~1/sqrt(dim)
(Johnson-Lindenstrauss), and the stored vectors stay small (256 values by default,
against 384 for the text; on real photos that changed pairwise cosines by 0.03 on
average, 0.09 at most: ``python -m benchmarks.bench_embeddings --only images``).

Photos are files under ``embeddings.image_root``; ``Item.image`` is a path relative to
it. Nothing is downloaded. A photo that is missing, outside the root, too large or not
a readable image leaves the item with text only; each such case is counted by reason
(``hotshelf_embeddings_image_problems``) and logged with the item's id.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from hotshelf.errors import ValidationError
from hotshelf.monitoring import get_logger

if TYPE_CHECKING:
    from PIL.Image import Image

    from hotshelf.events import Item
    from hotshelf.models import ImageEncoder

__all__ = ["PROJECTION_SEED", "ImageFusion", "Photo"]

_logger = get_logger("hotshelf.embeddings")
PROJECTION_SEED = 20261124


class Photo:
    """An item's photo file as found: its path and what tells a changed file apart."""

    __slots__ = ("path", "stamp")

    def __init__(self, path: Path, size: int, mtime_ns: int) -> None:
        self.path = path
        self.stamp = f"{path}:{size}:{mtime_ns}"


def _projection(source: int, dim: int) -> NDArray[np.float32] | None:
    """A ``(source, dim)`` matrix with orthonormal columns from a fixed seed (``None``
    when ``dim == source``: the embedding is kept whole)."""
    if dim == source:
        return None
    gaussian = np.random.default_rng(PROJECTION_SEED).standard_normal((source, dim))
    q, r = np.linalg.qr(gaussian)
    q *= np.sign(np.diag(r))  # QR's signs are a convention; fix them
    out: NDArray[np.float32] = q.astype(np.float32)
    return out


class ImageFusion:
    """Reads items' photos under ``root``, embeds them with ``encoder`` and joins them to
    the text embeddings (module docstring)."""

    def __init__(
        self,
        encoder: ImageEncoder,
        root: Path,
        *,
        weight: float,
        dim: int,
        text_dim: int,
        max_bytes: int = 20_000_000,
    ) -> None:
        if not 0.0 < weight < 1.0:
            raise ValidationError(f"image weight must be above 0 and below 1, got {weight}")
        if not 1 <= dim <= encoder.dim:
            raise ValidationError(f"image dim must be 1 to {encoder.dim}, got {dim}")
        self.encoder = encoder
        self.root = root.resolve()
        self.weight = weight
        self.image_dim = dim
        self.text_dim = text_dim
        self.max_bytes = max_bytes
        self._projection = _projection(encoder.dim, dim)
        self._text_scale = math.sqrt(1.0 - weight)
        self._image_scale = math.sqrt(weight)
        self._problems: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Values per fused vector: text, then photo."""
        return self.text_dim + self.image_dim

    @property
    def version(self) -> str:
        """What makes fused vectors differ: the photo model, the weight and the size."""
        return f"{self.encoder.version}+w{self.weight:g}+d{self.image_dim}"

    @property
    def problems(self) -> dict[str, int]:
        """Photos left out so far, by reason."""
        with self._lock:
            return dict(self._problems)

    def _problem(self, reason: str, item_id: str, detail: str) -> None:
        with self._lock:
            self._problems[reason] += 1
        _logger.warning("embeddings.image_skipped", item_id=item_id, reason=reason, detail=detail)

    def locate(self, item: Item) -> Photo | None:
        """The item's photo file, or ``None`` (no photo, or one that cannot be used:
        counted and logged)."""
        name = item.image
        if not name:
            return None
        if "://" in name:
            self._problem("not_a_file", item.item_id, "images are files under image_root")
            return None
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            self._problem("outside_root", item.item_id, name)
            return None
        try:
            stat = path.stat()
        except OSError as exc:
            self._problem("missing", item.item_id, f"{name}: {exc.strerror or exc}")
            return None
        if not path.is_file():
            self._problem("missing", item.item_id, f"{name}: not a file")
            return None
        if stat.st_size > self.max_bytes:
            self._problem("too_large", item.item_id, f"{name}: {stat.st_size} bytes")
            return None
        return Photo(path, stat.st_size, stat.st_mtime_ns)

    def fuse(
        self, item_ids: Sequence[str], text: NDArray[np.float32], photos: Sequence[Photo | None]
    ) -> NDArray[np.float32]:
        """``(n, dim)`` fused vectors from the items' text embeddings and photos."""
        from hotshelf.models import decode_image  # here: Pillow only when photos are on

        out = np.zeros((len(text), self.dim), dtype=np.float32)
        out[:, : self.text_dim] = text * self._text_scale
        rows: list[int] = []
        images: list[Image] = []
        for row, (item_id, photo) in enumerate(zip(item_ids, photos, strict=True)):
            if photo is None:
                continue
            try:
                with photo.path.open("rb") as f:
                    data = f.read(self.max_bytes + 1)
                if len(data) > self.max_bytes:
                    detail = f"{photo.path}: over {self.max_bytes} bytes"
                    self._problem("too_large", item_id, detail)
                    continue
                images.append(decode_image(data))
            except OSError as exc:
                self._problem("missing", item_id, f"{photo.path}: {exc.strerror or exc}")
                continue
            except ValidationError as exc:
                self._problem("unreadable", item_id, f"{photo.path}: {exc}")
                continue
            rows.append(row)
        if rows:
            out[rows, self.text_dim :] = self._photo_half(self.encoder.predict(images))
        return out

    def _photo_half(self, embedded: NDArray[np.float32]) -> NDArray[np.float32]:
        if self._projection is not None:
            embedded = embedded @ self._projection
            norms = np.linalg.norm(embedded, axis=1, keepdims=True)
            embedded = embedded / np.maximum(norms, 1e-12)
        half: NDArray[np.float32] = (embedded * self._image_scale).astype(np.float32)
        return half

    def query(self, text: NDArray[np.float32]) -> NDArray[np.float32]:
        """Query vectors for ``(n, text_dim)`` text embeddings: scored against any item,
        each gives the plain text cosine."""
        out = np.zeros((len(text), self.dim), dtype=np.float32)
        out[:, : self.text_dim] = text / self._text_scale
        return out
