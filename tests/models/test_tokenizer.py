"""Tokenization and length-bucketed batching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.models import base_model_dir
from hotshelf.models._tokenizer import WordPieceTokenizer

TOKENIZER = WordPieceTokenizer(base_model_dir() / "tokenizer.json", max_length=16)


@settings(max_examples=50, deadline=None)
@given(
    texts=st.lists(st.text(max_size=60), max_size=20),
    batch_size=st.integers(1, 8),
    sort_by_length=st.booleans(),
)
def test_batches_cover_every_text_once_padded_to_their_longest(
    texts: list[str], batch_size: int, sort_by_length: bool
) -> None:
    counts = TOKENIZER.token_counts(texts)
    batches = list(TOKENIZER.batches(texts, batch_size, sort_by_length=sort_by_length))
    rows = np.concatenate([b.rows for b in batches]) if batches else np.array([], dtype=np.intp)
    assert sorted(rows.tolist()) == list(range(len(texts)))
    for batch in batches:
        assert 1 <= len(batch.rows) <= batch_size
        lengths = batch.attention_mask.sum(axis=1)
        assert lengths.tolist() == [counts[r] for r in batch.rows]
        assert batch.input_ids.shape[1] == lengths.max() <= 16
        assert (batch.input_ids[batch.attention_mask == 0] == 0).all()
        assert not batch.token_type_ids.any()
    if sort_by_length:
        assert [counts[r] for r in rows] == sorted(counts)
    else:
        assert rows.tolist() == list(range(len(texts)))


def test_every_text_starts_with_cls_and_ends_with_sep() -> None:
    (batch,) = TOKENIZER.batches(["", "a cordless drill"], 2)
    cls_id, sep_id = 101, 102  # BERT uncased vocabulary
    assert batch.input_ids[:, 0].tolist() == [cls_id, cls_id]
    ends = batch.attention_mask.sum(axis=1) - 1
    assert batch.input_ids[np.arange(2), ends].tolist() == [sep_id, sep_id]


@pytest.mark.parametrize("length", [8, 128])
def test_truncation_keeps_max_length_tokens(length: int) -> None:
    tokenizer = WordPieceTokenizer(base_model_dir() / "tokenizer.json", max_length=length)
    assert tokenizer.token_counts(["word " * 1000]) == [length]
