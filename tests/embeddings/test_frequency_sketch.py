"""``FrequencySketch``: count-min estimates and their aging."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hotshelf.embeddings._frequency_sketch import FrequencySketch

# keys repeat within a batch: a tier counts a buffer of many requests in one batch
_batches = st.lists(
    st.lists(st.integers(0, 300), max_size=20).map(lambda ids: [f"k{i}" for i in ids]),
    max_size=30,
)


@given(batches=_batches)
def test_estimates_never_undercount_before_aging(batches: list[list[str]]) -> None:
    sketch = FrequencySketch(capacity=1000, seed=1)  # ages after 10,000 accesses: never here
    truth: Counter[str] = Counter()
    for batch in batches:
        sketch.add(sketch.hashes(batch))
        truth.update(batch)
    keys = [*sorted(truth), "never-seen"]
    estimates = sketch.estimate(sketch.hashes(keys)).tolist()
    assert all(est >= truth[key] for key, est in zip(keys, estimates, strict=True))


def test_estimates_are_close_for_a_lightly_loaded_sketch() -> None:
    sketch = FrequencySketch(capacity=1000, seed=2)
    for count, key in enumerate(f"k{i}" for i in range(100)):
        for _ in range(count % 7):
            sketch.add(sketch.hashes([key]))
    estimates = sketch.estimate(sketch.hashes([f"k{i}" for i in range(100)])).tolist()
    assert estimates == [i % 7 for i in range(100)]


def test_a_key_repeated_in_one_batch_counts_each_time() -> None:
    sketch = FrequencySketch(capacity=1000, seed=5)
    batch = [f"k{i}" for i in range(50) for _ in range(i % 5)]
    sketch.add(sketch.hashes(batch))
    sketch.add(sketch.hashes(batch[::2]))
    truth = Counter(batch) + Counter(batch[::2])
    keys = [f"k{i}" for i in range(50)]
    assert sketch.estimate(sketch.hashes(keys)).tolist() == [truth[key] for key in keys]


def test_counts_saturate() -> None:
    sketch = FrequencySketch(capacity=1000, seed=6)
    hot = sketch.hashes(["hot"])
    sketch.add(np.repeat(hot, 200))
    sketch.add(np.repeat(hot, 200))
    assert sketch.estimate(hot).tolist() == [255]


def test_counts_halve_every_ten_accesses_per_item() -> None:
    sketch = FrequencySketch(capacity=10, seed=3)  # halves after 100 accesses
    hot = sketch.hashes(["hot"])
    for _ in range(64):
        sketch.add(hot)
    assert sketch.estimate(hot).tolist() == [64]
    others = sketch.hashes([f"other{i}" for i in range(36)])
    sketch.add(others)  # the 100th access: every counter is halved
    assert sketch.estimate(hot).tolist() == [32]


def test_empty_batches() -> None:
    sketch = FrequencySketch(capacity=10)
    sketch.add(sketch.hashes([]))
    assert sketch.estimate(sketch.hashes([])).tolist() == []
