"""Embedding quality on real catalogs, and what fine-tuning buys.

    python -m benchmarks._embedding_quality [--sample 5000] [--epochs 2]

``instacart``: a seeded sample of ``--sample`` products, embedded from their *names
only* (the aisle is what is being predicted, so it stays out of the text). For each
product, the share of its 10 exact cosine nearest neighbours (itself excluded) that
sit in its aisle, against the share random neighbours would give.

``amazon_google`` (``../shared/data/matching/amazon_google``): for every matching pair
of the test split, the Amazon title searches all Google records of the test split
(title + manufacturer); recall@10 of the true match. Then the shipped encoder is
fine-tuned on the train split's matching pairs (same texts) with in-batch negatives,
exported to fp32 ONNX, and measured again. Reported: recall@1 and @10 before and
after, the fine-tuning settings, its loss per epoch and its wall time.

JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._embedding_encode import instacart_products
from benchmarks._instacart import DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model is read from an installed package

K = 10
MATCHING = DATA / "matching" / "amazon_google"


def same_aisle_share(sample: int = 5000) -> dict[str, Any]:
    """Same-aisle share of each product's 10 nearest neighbours, with a random baseline."""
    from hotshelf.models import exact_top_k, load_text_encoder

    products = random.Random(0).sample(instacart_products(with_category=False), sample)
    names = [name for name, _ in products]
    aisles = np.array([aisle for _, aisle in products])
    encoder = load_text_encoder()
    started = time.perf_counter()
    vectors = encoder.predict(names)
    encode_seconds = time.perf_counter() - started
    neighbours = exact_top_k(vectors, vectors, K + 1)
    share = _share_without_self(neighbours, aisles)
    # Random neighbours land in an item's aisle with chance (aisle size - 1) / (n - 1).
    sizes = Counter(aisles.tolist())
    random_share = float(np.mean([(sizes[a] - 1) / (len(aisles) - 1) for a in aisles]))
    return {
        "products": sample,
        "aisles": len(sizes),
        "encoder": encoder.version,
        "encode_seconds": round(encode_seconds, 2),
        "same_aisle_share_at_10": round(share, 4),
        "random_baseline": round(random_share, 4),
        "lift": round(share / random_share, 1),
    }


def _share_without_self(neighbours: np.ndarray, aisles: np.ndarray) -> float:
    rows = np.arange(len(neighbours))[:, None]
    # Drop each item itself (an exact duplicate name may outrank it; drop one hit either way).
    keep = neighbours != rows
    keep[keep.sum(axis=1) > K, -1] = False
    others = neighbours[keep].reshape(len(neighbours), K)
    return float((aisles[others] == aisles[:, None]).mean())


def _record(serialized: str) -> dict[str, str]:
    """``COL title VAL x COL price VAL y`` -> ``{"title": "x", "price": "y"}``."""
    fields = {}
    for part in serialized.split("COL ")[1:]:
        name, _, value = part.partition(" VAL ")
        fields[name.strip()] = value.strip()
    return fields


def _right_text(record: dict[str, str]) -> str:
    return " ".join(v for v in (record.get("title", ""), record.get("manufacturer", "")) if v)


def matching_split(split: str) -> list[tuple[str, str, bool]]:
    """``(left title, right title + manufacturer, is a match)`` per line of a split."""
    rows = []
    for line in (MATCHING / f"{split}.txt").read_text().splitlines():
        left, right, label = line.split("\t")
        rows.append((_record(left).get("title", ""), _right_text(_record(right)), label == "1"))
    return rows


def _recall(encoder: Any, split: list[tuple[str, str, bool]]) -> dict[str, float]:
    from hotshelf.models import pair_recall_at_k

    corpus = sorted({right for _, right, _ in split})
    index = {text: i for i, text in enumerate(corpus)}
    matches = [(left, index[right]) for left, right, match in split if match]
    queries, truth = [q for q, _ in matches], [t for _, t in matches]
    return {
        "queries": len(queries),
        "corpus": len(corpus),
        "recall_at_1": round(pair_recall_at_k(encoder, queries, corpus, truth, k=1), 4),
        "recall_at_10": round(pair_recall_at_k(encoder, queries, corpus, truth, k=K), 4),
    }


def fine_tuning_gain(epochs: int = 2) -> dict[str, Any]:
    """Amazon-Google test recall of the shipped encoder, then of one fine-tuned on train."""
    from hotshelf.models import FineTuneConfig, fine_tune, load_text_encoder

    test = matching_split("test")
    pairs = [(left, right) for left, right, match in matching_split("train") if match]
    base = load_text_encoder()
    before = _recall(base, test)
    config = FineTuneConfig(epochs=epochs)
    with tempfile.TemporaryDirectory() as scratch:
        result = fine_tune(pairs, Path(scratch), config=config)
        after = _recall(load_text_encoder(result.model_dir), test)
    meta = result.meta
    return {
        "train_pairs": len(pairs),
        "settings": {
            "epochs": meta.epochs,
            "batch_size": meta.batch_size,
            "learning_rate": meta.learning_rate,
            "temperature": meta.temperature,
        },
        "before": {"encoder": base.version, **before},
        "after": {"encoder": meta.version, **after},
        "epoch_losses": meta.epoch_losses,
        "export_agreement": {"mean": meta.agreement.mean_cosine, "min": meta.agreement.min_cosine},
        "train_seconds": meta.train_seconds,
        "fine_tune_total_seconds": round(result.total_seconds, 1),
    }


def run(*, sample: int = 5000, epochs: int = 2) -> dict[str, Any]:
    """Both quality checks; each is skipped, with a note, when its data is absent."""
    out: dict[str, Any] = {}
    if (DATA / "instacart" / "products.csv").is_file():
        out["instacart"] = same_aisle_share(sample)
    else:
        out["instacart"] = {"skipped": f"{DATA / 'instacart'} is absent"}
    if (MATCHING / "test.txt").is_file():
        out["amazon_google"] = fine_tuning_gain(epochs)
    else:
        out["amazon_google"] = {"skipped": f"{MATCHING} is absent"}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(run(sample=args.sample, epochs=args.epochs), indent=2))


if __name__ == "__main__":
    main()
