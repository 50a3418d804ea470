"""Exact nearest neighbours and pair recall@k."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.errors import ValidationError
from hotshelf.models import OnnxTextEncoder, exact_top_k, pair_recall_at_k


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    queries=st.integers(1, 30),
    corpus=st.integers(1, 40),
    k=st.integers(1, 50),
)
def test_exact_top_k_matches_a_full_sort(seed: int, queries: int, corpus: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((queries, 8)).astype(np.float32)
    c = rng.standard_normal((corpus, 8)).astype(np.float32)
    expected = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(exact_top_k(q, c, k), expected)


def test_exact_top_k_breaks_ties_by_index() -> None:
    corpus = np.ones((5, 4), dtype=np.float32)
    assert exact_top_k(np.ones((1, 4), dtype=np.float32), corpus, 3).tolist() == [[0, 1, 2]]


def test_pair_recall_counts_queries_whose_match_is_in_the_top_k(
    onnx_encoder: OnnxTextEncoder,
) -> None:
    corpus = ["power drill", "yellow banana", "whole milk", "frying pan"]
    queries = ["cordless drill", "banana", "milk", "banana"]
    assert pair_recall_at_k(onnx_encoder, queries, corpus, [0, 1, 2, 1], k=1) == 1.0
    # The last query's "match" is the frying pan: found only when k covers the corpus.
    assert pair_recall_at_k(onnx_encoder, queries, corpus, [0, 1, 2, 3], k=1) == 0.75
    assert pair_recall_at_k(onnx_encoder, queries, corpus, [0, 1, 2, 3], k=4) == 1.0


@pytest.mark.parametrize(
    ("queries", "corpus", "truth", "k", "problem"),
    [
        (["a"], ["b"], [0, 0], 10, "truth indices"),
        ([], ["b"], [], 10, "at least one"),
        (["a"], ["b"], [1], 10, r"in \[0, 1\)"),
        (["a"], ["b"], [0], 0, "k must be"),
    ],
)
def test_bad_recall_inputs_are_validation_errors(
    onnx_encoder: OnnxTextEncoder,
    queries: list[str],
    corpus: list[str],
    truth: list[int],
    k: int,
    problem: str,
) -> None:
    with pytest.raises(ValidationError, match=problem):
        pair_recall_at_k(onnx_encoder, queries, corpus, truth, k=k)
