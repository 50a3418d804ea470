"""Vectors and waiting helpers shared by the embedding tests."""

from __future__ import annotations

import time

import numpy as np

from hotshelf.embeddings import TwoTierStore, Vectors

DIM = 16


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> Vectors:
    """``n`` random L2-normalised float32 vectors, like the encoder's."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def keyed(keys: list[str], dim: int = DIM) -> Vectors:
    """Vectors that say which key they belong to: row i is filled with the number at
    the end of ``keys[i]`` ("item-7" -> 7.0), so a vector served for the wrong key shows."""
    return np.array([[float(key.rsplit("-", 1)[1])] * dim for key in keys], dtype=np.float32)


def wait_idle(store: TwoTierStore, timeout_s: float = 10.0) -> None:
    """Until no remote read is in flight nor any refresh of the local tier pending."""
    deadline = time.monotonic() + timeout_s
    while store.stats()["in_flight"] or store.stats()["refresh_backlog"]:
        if time.monotonic() > deadline:
            raise AssertionError("remote reads still in flight")
        time.sleep(0.002)
