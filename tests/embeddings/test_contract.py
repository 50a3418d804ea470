"""The contract every ``EmbeddingTier`` meets, run against each of them.

The fixture opens tiers through a factory, so a test can close a tier and open it
again to check what survives (the local tier is memory only and skips those).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotshelf.embeddings import EmbeddingTier, LocalTier, MmapTier, RedisTier
from hotshelf.errors import ValidationError
from tests.embeddings.data import DIM, unit_vectors


class TierFactory:
    """Opens tiers of one kind; ``reopen`` gives a new handle on the same data."""

    def __init__(self, kind: str, tmp_path: Path, redis_url: str | None) -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._redis_url = redis_url
        self._open: list[EmbeddingTier] = []
        self._names = itertools.count()

    @property
    def persistent(self) -> bool:
        return self.kind != "local"

    def open(self, name: str = "main", dim: int = DIM) -> EmbeddingTier:
        tier: EmbeddingTier
        if self.kind == "local":
            tier = LocalTier(dim, capacity=10_000, seed=1)
        elif self.kind == "mmap":
            tier = MmapTier(self._tmp_path / name, dim, initial_rows=8)
        else:
            assert self._redis_url is not None
            tier = RedisTier(self._redis_url, dim, prefix=f"test:{name}:")
        self._open.append(tier)
        return tier

    def fresh(self) -> EmbeddingTier:
        return self.open(f"fresh{next(self._names)}")

    def close_all(self) -> None:
        for tier in self._open:
            tier.close()


@pytest.fixture(params=["local", "mmap", pytest.param("redis", marks=pytest.mark.redis)])
def tiers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TierFactory]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    factory = TierFactory(request.param, tmp_path, url)
    yield factory
    factory.close_all()


@pytest.fixture
def tier(tiers: TierFactory) -> EmbeddingTier:
    return tiers.open()


def test_round_trip_is_exact(tier: EmbeddingTier) -> None:
    keys = [f"item-{i}" for i in range(50)]
    vectors = unit_vectors(50)
    vectors[0] = np.float32(-0.0)  # signed zero and subnormals survive byte for byte
    vectors[1, :3] = np.array([np.finfo(np.float32).smallest_subnormal, 1e38, -1.5], np.float32)
    tier.put_many(keys, vectors)
    got, found = tier.get_many(keys)
    assert found.all()
    assert got.dtype == np.float32
    assert got.shape == (50, DIM)
    assert got.tobytes() == vectors.tobytes()
    assert len(tier) == 50
    assert tier.dim == DIM


def test_missing_keys_are_zero_rows_and_not_found(tier: EmbeddingTier) -> None:
    tier.put_many(["a", "c"], unit_vectors(2))
    got, found = tier.get_many(["a", "b", "c", "d"])
    assert found.tolist() == [True, False, True, False]
    assert not got[[1, 3]].any()
    assert got[[0, 2]].tobytes() == unit_vectors(2).tobytes()
    none, found_none = tier.get_many(["x", "y"])
    assert none.shape == (2, DIM)
    assert not none.any()
    assert not found_none.any()


def test_overwrite_replaces_the_vector(tier: EmbeddingTier) -> None:
    old, new = unit_vectors(2, seed=1), unit_vectors(2, seed=2)
    tier.put_many(["a", "b"], old)
    tier.put_many(["b"], new[1:])
    got, found = tier.get_many(["a", "b"])
    assert found.all()
    assert got[0].tobytes() == old[0].tobytes()
    assert got[1].tobytes() == new[1].tobytes()
    assert len(tier) == 2


def test_delete(tier: EmbeddingTier) -> None:
    tier.put_many(["a", "b", "c"], unit_vectors(3))
    assert tier.delete_many(["a", "a", "zzz"]) == 1
    got, found = tier.get_many(["a", "b", "c"])
    assert found.tolist() == [False, True, True]
    assert not got[0].any()
    assert len(tier) == 2
    assert tier.delete_many([]) == 0
    tier.put_many(["a"], unit_vectors(1, seed=9))  # a deleted key can come back
    got, found = tier.get_many(["a"])
    assert found.all()
    assert got.tobytes() == unit_vectors(1, seed=9).tobytes()


def test_order_is_the_request_order(tier: EmbeddingTier) -> None:
    keys = [f"item-{i}" for i in range(40)]
    vectors = unit_vectors(40)
    tier.put_many(keys, vectors)
    order = np.random.default_rng(3).permutation(40)
    got, found = tier.get_many([keys[i] for i in order])
    assert found.all()
    assert got.tobytes() == vectors[order].tobytes()


def test_duplicate_keys(tier: EmbeddingTier) -> None:
    vectors = unit_vectors(3)
    tier.put_many(["a", "b", "a"], vectors)  # last one wins
    got, found = tier.get_many(["a", "b", "a", "a"])
    assert found.all()
    assert got.tobytes() == vectors[[2, 1, 2, 2]].tobytes()
    assert len(tier) == 2


def test_empty_requests(tier: EmbeddingTier) -> None:
    got, found = tier.get_many([])
    assert got.shape == (0, DIM)
    assert found.shape == (0,)
    tier.put_many([], np.zeros((0, DIM), np.float32))
    assert len(tier) == 0


@pytest.mark.parametrize(
    ("keys", "vectors", "says"),
    [
        (["a"], np.zeros((1, DIM + 1), np.float32), "dim mismatch"),
        (["a", "b"], np.zeros((2, DIM - 1), np.float32), "dim mismatch"),
        (["a", "b"], np.zeros((3, DIM), np.float32), "2 keys but 3 vectors"),
        (["a"], np.zeros((1, 2, DIM), np.float32), "dim mismatch"),
        (["a"], np.full((1, DIM), np.nan, np.float32), "NaN"),
        (["a"], [["x"] * DIM], "not a float matrix"),
        ([1], np.zeros((1, DIM), np.float32), "invalid embedding keys"),
        (["k" * 2000], np.zeros((1, DIM), np.float32), "invalid embedding keys"),
    ],
)
def test_bad_writes_raise_validation_errors(
    tier: EmbeddingTier, keys: list[str], vectors: object, says: str
) -> None:
    with pytest.raises(ValidationError, match=says) as info:
        tier.put_many(keys, vectors)  # type: ignore[arg-type]
    assert info.value.status == 422
    assert len(tier) == 0


def test_one_vector_may_be_given_flat(tier: EmbeddingTier) -> None:
    tier.put_many(["a"], unit_vectors(1)[0])
    got, found = tier.get_many(["a"])
    assert found.all()
    assert got.tobytes() == unit_vectors(1).tobytes()


def test_writes_survive_a_reopen(tiers: TierFactory) -> None:
    if not tiers.persistent:
        pytest.skip("the local tier lives in memory")
    keys = [f"item-{i}" for i in range(100)]
    vectors = unit_vectors(100)
    first = tiers.open("kept")
    first.put_many(keys, vectors)
    first.put_many(["item-5"], unit_vectors(1, seed=5))
    first.delete_many(["item-6"])
    first.close()
    again = tiers.open("kept")
    got, found = again.get_many(keys)
    assert len(again) == 99
    assert found.tolist() == [i != 6 for i in range(100)]
    expected = vectors.copy()
    expected[5] = unit_vectors(1, seed=5)[0]
    expected[6] = 0.0
    assert got.tobytes() == expected.tobytes()


_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]),
        st.lists(st.integers(0, 15), min_size=0, max_size=6),
        st.integers(0, 2**16),
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_behaves_like_a_dict(tiers: TierFactory, ops: list[tuple[str, list[int], int]]) -> None:
    tier = tiers.fresh()
    model: dict[str, bytes] = {}
    for op, ids, seed in ops:
        keys = [f"k{i}" for i in ids]
        if op == "put":
            vectors = unit_vectors(len(keys), seed=seed)
            tier.put_many(keys, vectors)
            model.update(zip(keys, (v.tobytes() for v in vectors), strict=True))
        else:
            assert tier.delete_many(keys) == len({k for k in keys if k in model})
            for key in keys:
                model.pop(key, None)
    every = [f"k{i}" for i in range(16)]
    got, found = tier.get_many(every)
    assert found.tolist() == [key in model for key in every]
    for key, row in zip(every, got, strict=True):
        assert row.tobytes() == model.get(key, bytes(4 * DIM))
    assert len(tier) == len(model)
