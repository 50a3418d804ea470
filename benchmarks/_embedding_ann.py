"""Nearest-neighbour libraries side by side on the same real embeddings.

Exact search (a matrix product) is the truth; hnswlib (what hotshelf ships, also timed
through ``HnswIndex``), faiss and usearch build HNSW graphs with the same parameters
(M=16, ef_construction=128, ef_search=64) and answer single queries, as
``/v1/items/{id}/similar`` does. Reported: build seconds, recall@10 against exact,
and query latency p50/p99 in microseconds.
The libraries not installed (faiss and usearch are dev-only) are reported as skipped.
usearch must be used after onnxruntime is loaded (the other order crashes it); here the
job section has loaded the encoder already.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks._loadgen import percentile

M, EF_CONSTRUCTION, EF_SEARCH, K = 16, 128, 64, 10

Search = Callable[[np.ndarray], np.ndarray]


def _hnsw_hotshelf(vectors: np.ndarray) -> Search:
    from hotshelf.embeddings import HnswIndex

    index = HnswIndex(vectors.shape[1], connectivity=M, expansion_add=EF_CONSTRUCTION,
                      expansion_search=EF_SEARCH, threads=-1)  # fmt: skip
    index.upsert([str(i) for i in range(len(vectors))], vectors)
    return lambda q: np.array([int(s.item_id) for s in index.search(q, K)])


def _usearch(vectors: np.ndarray) -> Search:
    import onnxruntime  # noqa: F401  (see the module docstring)
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=M,
                  expansion_add=EF_CONSTRUCTION, expansion_search=EF_SEARCH)  # fmt: skip
    index.add(np.arange(len(vectors), dtype=np.uint64), vectors)
    return lambda q: index.search(q, K, threads=1).keys


def _exact_hotshelf(vectors: np.ndarray) -> Search:
    from hotshelf.embeddings import ExactIndex

    index = ExactIndex(vectors.shape[1])
    index.upsert([str(i) for i in range(len(vectors))], vectors)
    return lambda q: np.array([int(s.item_id) for s in index.search(q, K)])


def _faiss(vectors: np.ndarray) -> Search:
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexHNSWFlat(vectors.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(vectors)
    index.hnsw.efSearch = EF_SEARCH
    return lambda q: index.search(q[None, :], K)[1][0]


def _hnswlib(vectors: np.ndarray) -> Search:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), ef_construction=EF_CONSTRUCTION, M=M)
    index.add_items(vectors, np.arange(len(vectors)))
    index.set_ef(EF_SEARCH)
    return lambda q: index.knn_query(q, k=K)[0][0]


LIBRARIES: dict[str, Callable[[np.ndarray], Search]] = {
    "hotshelf_exact": _exact_hotshelf,
    "hotshelf_hnsw (hnswlib)": _hnsw_hotshelf,
    "hnswlib": _hnswlib,
    "faiss_hnsw": _faiss,
    "usearch": _usearch,
}


def run(vectors: np.ndarray, *, queries: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every library's build time, recall@10 and single-query latency on ``vectors``."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), min(queries, len(vectors)), replace=False)
    truth = np.argsort(-(vectors[rows] @ vectors.T), axis=1, kind="stable")[:, :K]
    out: dict[str, Any] = {"items": len(vectors), "queries": len(rows), "k": K,
                           "hnsw": {"M": M, "ef_construction": EF_CONSTRUCTION,
                                    "ef_search": EF_SEARCH}}  # fmt: skip
    for name, build in LIBRARIES.items():
        try:
            started = time.perf_counter()
            search = build(vectors)
            built = time.perf_counter() - started
        except ImportError as exc:
            out[name] = {"skipped": f"not installed: {exc}"}
            continue
        hits, latencies = 0, []
        for query_row, expected in zip(rows, truth, strict=True):
            started = time.perf_counter()
            found = search(vectors[query_row])
            latencies.append((time.perf_counter() - started) * 1e6)
            hits += len(set(found.tolist()) & set(expected.tolist()))
        latencies.sort()
        out[name] = {
            "build_s": round(built, 2),
            f"recall_at_{K}": round(hits / (K * len(rows)), 4),
            "query_p50_us": round(percentile(latencies, 50), 1),
            "query_p99_us": round(percentile(latencies, 99), 1),
        }
    return out
