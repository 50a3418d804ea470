"""Photo embeddings: EfficientNet-Lite0 throughput and what the stored rotation keeps.

    python -m benchmarks.bench_embeddings --only images

On real photographs (scikit-image's sample photos, a dev dependency; there is no
product photo set on this machine), each used ``--copies`` times:

- ``throughput``: photos/s through ``ImageEncoder`` (decode + resize + network) with
  its default network batch of 4 and with 16, against one photo per call (the
  baseline: what a naive loop does), on every core; and the decode + resize share.
- ``rotation``: for the stored photo half of ``image_dim`` values (a fixed random
  rotation of the model's 1,280), the largest and mean absolute change of every
  pairwise cosine among the photos, per ``image_dim``.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import numpy as np

from hotshelf.embeddings._images import _projection
from hotshelf.models import ImageEncoder, decode_image

PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png",
          "motorcycle_right.png", "horse.png", "camera.png", "brick.png", "grass.png")  # fmt: skip


def _photo_bytes() -> list[bytes]:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the images benchmark needs scikit-image (pip install -e '.[dev]')")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    return [(root / name).read_bytes() for name in PHOTOS]


def run(copies: int = 8) -> dict[str, Any]:
    raw = _photo_bytes()
    data = [blob for _ in range(copies) for blob in raw]
    out: dict[str, Any] = {"photos": len(data), "threads": os.cpu_count()}
    with ImageEncoder() as encoder:
        encoder.warm_up()
        started = time.perf_counter()
        images = [decode_image(blob) for blob in data]
        encoder.pixels(images)
        prepare_s = time.perf_counter() - started
        rates = {}
        for name, network_batch, call in (("batch_4", 4, len(data)), ("batch_16", 16, len(data)),
                                          ("one_per_call", 4, 1)):  # fmt: skip
            encoder.batch_size = network_batch
            started = time.perf_counter()
            for start in range(0, len(data), call):
                chunk = [decode_image(blob) for blob in data[start : start + call]]
                encoder.predict(chunk)
            rates[name] = round(len(data) / (time.perf_counter() - started), 1)
        out["throughput"] = {
            "photos_per_s": rates,
            "batch_4_vs_one_per_call": round(rates["batch_4"] / rates["one_per_call"], 2),
            "decode_and_resize_share": round(prepare_s * rates["batch_4"] / len(data), 3),
            "model": encoder.version,
        }
        full = encoder.predict([decode_image(blob) for blob in raw])
    pairs = list(itertools.combinations(range(len(raw)), 2))
    exact = np.array([full[a] @ full[b] for a, b in pairs])
    rotation = {}
    for dim in (64, 128, 256, 1280):
        projection = _projection(full.shape[1], dim)
        turned = full if projection is None else full @ projection
        turned = turned / np.linalg.norm(turned, axis=1, keepdims=True)
        kept = np.array([turned[a] @ turned[b] for a, b in pairs])
        error = np.abs(kept - exact)
        rotation[str(dim)] = {"max_abs_cosine_change": round(float(error.max()), 4),
                              "mean_abs_cosine_change": round(float(error.mean()), 4)}  # fmt: skip
    out["rotation"] = rotation
    out["motorcycle_views_cosine"] = round(float(full[4] @ full[5]), 3)
    unrelated = np.delete(exact, pairs.index((4, 5)))
    out["unrelated_pairs_mean_cosine"] = round(float(unrelated.mean()), 3)
    return out
