"""``EmbeddingTier``: the interface every embedding store tier meets, and its checks.

A tier maps string keys to float32 vectors of one fixed dimension. Reads come back as
one ``(n, dim)`` matrix in request order plus an ``(n,)`` found mask: a key that is
missing gets a row of zeros and ``False``, so callers never branch per key. Writes are
batches; within one ``put_many`` a key given twice keeps its last vector.

Implementations: ``LocalTier`` (the bounded in-process hot tier), ``MmapTier`` (an
on-disk matrix, the embedded default remote tier) and ``RedisTier``. One contract suite
(``tests/embeddings/test_contract.py``) runs against all of them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from hotshelf._closing import Closeable
from hotshelf.errors import FieldProblem, ValidationError

__all__ = [
    "EmbeddingTier",
    "FoundMask",
    "Vectors",
    "check_dim",
    "check_keys",
    "check_vectors",
    "empty_result",
]

Vectors: TypeAlias = npt.NDArray[np.float32]
FoundMask: TypeAlias = npt.NDArray[np.bool_]

# Longer keys are a client bug (ids, not documents); the mmap journal stores the length in 16 bits.
MAX_KEY_BYTES = 1024


class EmbeddingTier(Closeable):
    """A store of float32 vectors of one dimension, addressed by string keys."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The length of every vector in this tier."""

    @abc.abstractmethod
    def get_many(self, keys: Sequence[str]) -> tuple[Vectors, FoundMask]:
        """Vectors of ``keys`` in order as an ``(n, dim)`` matrix (zeros where missing),
        and the ``(n,)`` mask of the keys found."""

    @abc.abstractmethod
    def put_many(self, keys: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Store ``vectors[i]`` under ``keys[i]``; a key given twice keeps its last vector."""

    @abc.abstractmethod
    def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; returns how many of them were present."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of keys stored."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files, connections and memory; the tier is unusable afterwards."""


def check_dim(dim: int) -> int:
    """``dim`` if it is a usable vector length, else a ``ValidationError``."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValidationError(f"embedding dim must be a positive integer, got {dim!r}")
    return dim


def check_keys(keys: Sequence[str]) -> list[str]:
    """``keys`` as a list, each a string of at most ``MAX_KEY_BYTES`` UTF-8 bytes."""
    keys = list(keys)
    # a character is at most 4 UTF-8 bytes: only long keys need encoding to be measured
    if all(isinstance(key, str) and len(key) <= MAX_KEY_BYTES // 4 for key in keys):
        return keys
    problems = [
        FieldProblem(f"$[{i}]", "key must be a string")
        if not isinstance(key, str)
        else FieldProblem(f"$[{i}]", f"key longer than {MAX_KEY_BYTES} bytes")
        for i, key in enumerate(keys)
        if not isinstance(key, str) or len(key.encode()) > MAX_KEY_BYTES
    ]
    if problems:
        raise ValidationError("invalid embedding keys", problems)
    return keys


def check_vectors(keys: Sequence[str], vectors: npt.ArrayLike, dim: int) -> Vectors:
    """``vectors`` as a C-contiguous float32 ``(len(keys), dim)`` matrix of finite values.

    A 1-d vector is taken as one row. Anything else raises a ``ValidationError`` that
    says which shape was expected and which came.
    """
    try:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"embedding vectors are not a float matrix: {exc}") from None
    if matrix.ndim == 1 and len(keys) == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValidationError(
            f"embedding dim mismatch: expected vectors of shape ({len(keys)}, {dim}), "
            f"got {matrix.shape}"
        )
    if matrix.shape[0] != len(keys):
        raise ValidationError(f"{len(keys)} keys but {matrix.shape[0]} vectors")
    if not np.isfinite(matrix).all():
        raise ValidationError("embedding vectors contain NaN or infinity")
    return matrix


def empty_result(n: int, dim: int) -> tuple[Vectors, FoundMask]:
    """The answer for ``n`` keys of which none was found."""
    return np.zeros((n, dim), dtype=np.float32), np.zeros(n, dtype=np.bool_)
