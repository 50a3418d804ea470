"""WordPiece tokenization and length-bucketed batching for the text encoders.

The tokenizer is the Rust ``tokenizers`` library reading the model's ``tokenizer.json``,
so the serving path needs neither torch nor ``transformers``. Padding is dynamic: a
batch is padded to its own longest text, not to ``max_length``, and texts are sorted
by token count before they are cut into batches, so short texts are not padded up to
long ones (catalog titles run from 3 to 60 tokens).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from hotshelf.errors import ConfigError, FieldProblem, ValidationError

__all__ = ["TokenBatch", "WordPieceTokenizer", "check_texts"]


@dataclass(frozen=True, slots=True)
class TokenBatch:
    """Padded model inputs for some of the texts; ``rows`` says which (positions in the call)."""

    rows: NDArray[np.intp]
    input_ids: NDArray[np.int64]
    attention_mask: NDArray[np.int64]
    token_type_ids: NDArray[np.int64]


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list; ValidationError naming every item that is not a string."""
    if isinstance(texts, str):
        # A lone string is a Sequence[str] too; encoding it character by character is never meant.
        raise ValidationError("texts must be a list of strings, not one string")
    items = list(texts)
    problems = [
        FieldProblem(f"$[{i}]", f"must be a string, not {type(text).__name__}")
        for i, text in enumerate(items)
        if not isinstance(text, str)
    ]
    if problems:
        raise ValidationError(f"{len(problems)} text(s) are not strings", problems)
    return items


class WordPieceTokenizer:
    """A ``tokenizer.json`` tokenizer that truncates at ``max_length`` tokens and never pads."""

    def __init__(self, path: Path, *, max_length: int = 128) -> None:
        if max_length < 3:
            # [CLS] and [SEP] take two tokens; fewer than three leaves no room for text.
            raise ConfigError(f"max_length must be at least 3, not {max_length}")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for bad files
            raise ConfigError(f"cannot read tokenizer {path}: {exc}") from exc
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)
        self._tokenizer = tokenizer
        self.path = path
        self.max_length = max_length

    def batches(
        self, texts: Sequence[str], batch_size: int, *, sort_by_length: bool = True
    ) -> Iterator[TokenBatch]:
        """Tokenize ``texts`` and yield padded batches of at most ``batch_size`` texts.

        With ``sort_by_length`` the texts are grouped by token count (shortest first);
        otherwise batches follow the input order. Either way ``rows`` maps every batch
        row back to its text's position in ``texts``.
        """
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.intp, count=len(ids))
        order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield _pad([ids[r] for r in rows], rows, int(lengths[rows].max()))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text becomes after truncation (with [CLS] and [SEP])."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]


def _pad(ids: list[NDArray[np.int64]], rows: NDArray[np.intp], width: int) -> TokenBatch:
    input_ids = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    # Single-segment inputs: every token type is 0.
    return TokenBatch(rows, input_ids, mask, np.zeros_like(input_ids))
