"""Retrieval quality of an encoder: exact cosine nearest neighbours and pair recall@k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from hotshelf.errors import ValidationError
from hotshelf.models._text_encoder import TextEncoder

__all__ = ["exact_top_k", "pair_recall_at_k"]

# Score this many query rows at a time: a 1024 x 50,000 float32 block is 200 MB.
_QUERY_BLOCK = 1024


def exact_top_k(
    queries: NDArray[np.float32], corpus: NDArray[np.float32], k: int
) -> NDArray[np.intp]:
    """Indices of the ``k`` corpus rows with the highest dot product per query, best first.

    For L2-normalised rows that is exact cosine search. ``k`` is capped at the corpus size.
    """
    k = min(k, len(corpus))
    out = np.empty((len(queries), k), dtype=np.intp)
    for start in range(0, len(queries), _QUERY_BLOCK):
        scores = queries[start : start + _QUERY_BLOCK] @ corpus.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition leaves the k best unordered; order them, ties by index for determinism.
        top_scores = np.take_along_axis(scores, top, axis=1)
        ranked = np.lexsort((top, -top_scores), axis=1)
        out[start : start + len(top)] = np.take_along_axis(top, ranked, axis=1)
    return out


def pair_recall_at_k(
    encoder: TextEncoder,
    queries: Sequence[str],
    corpus: Sequence[str],
    truth: Sequence[int],
    k: int = 10,
) -> float:
    """Share of queries whose true match ``corpus[truth[i]]`` is among their ``k`` nearest.

    A query with several true matches is passed once per match.
    """
    if len(queries) != len(truth):
        raise ValidationError(f"{len(queries)} queries but {len(truth)} truth indices")
    if not queries or not corpus:
        raise ValidationError("pair recall needs at least one query and one corpus text")
    if k < 1:
        raise ValidationError(f"k must be at least 1, not {k}")
    expected = np.asarray(truth, dtype=np.intp)
    if expected.min() < 0 or expected.max() >= len(corpus):
        raise ValidationError(f"truth indices must be in [0, {len(corpus)})")
    top = exact_top_k(encoder.predict(queries), encoder.predict(corpus), k)
    return float((top == expected[:, None]).any(axis=1).mean())
