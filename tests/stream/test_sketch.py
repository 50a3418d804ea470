"""Heavy hitters: the Misra-Gries / Space-Saving bounds, packed columns, state round trips."""

from __future__ import annotations

from collections import Counter

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.stream._sketch import (
    HeavyHitters,
    decrement_prune,
    lane,
    merged,
    pack,
    unpack,
)

keys = st.sampled_from([f"k{i}" for i in range(25)])
updates = st.lists(st.tuples(keys, st.integers(1, 50)), max_size=400)


def _truth(stream: list[tuple[str, int]]) -> Counter[str]:
    truth: Counter[str] = Counter()
    for key, weight in stream:
        truth[key] += weight
    return truth


@settings(max_examples=150, deadline=None)
@given(stream=updates, capacity=st.integers(1, 8))
def test_estimates_bracket_the_truth(stream: list[tuple[str, int]], capacity: int) -> None:
    table = HeavyHitters(capacity)
    for key, weight in stream:
        table.add(key, weight)
        assert len(table) <= table.limit
    truth = _truth(stream)
    total = sum(truth.values())
    (delta,) = table.decrement
    assert delta * (capacity + 1) <= total  # Δ <= N / (c + 1)
    assert table.totals() == [total]
    for key, true in truth.items():
        estimate = table.estimate(key)
        assert estimate <= true <= estimate + delta


@settings(max_examples=100, deadline=None)
@given(
    stream=st.lists(st.tuples(keys, st.integers(1, 30), st.integers(0, 30)), max_size=300),
    capacity=st.integers(1, 6),
)
def test_each_packed_column_keeps_its_own_bound(
    stream: list[tuple[str, int, int]], capacity: int
) -> None:
    table = HeavyHitters(capacity, width=2)
    for key, a, b in stream:
        table.add(key, pack([a, b]))
        assert len(table) <= table.limit
    for column in (0, 1):
        truth = _truth([(key, (a, b)[column]) for key, a, b in stream])
        delta = table.decrement[column]
        assert delta * (capacity + 1) <= sum(truth.values())
        assert table.totals()[column] == sum(truth.values())
        for key, true in truth.items():
            estimate = table.estimate(key, column)
            assert estimate <= true <= estimate + delta


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(updates, min_size=1, max_size=4), capacity=st.integers(1, 6))
def test_a_merge_of_disjoint_parts_keeps_the_bound(
    parts: list[list[tuple[str, int]]], capacity: int
) -> None:
    tables = []
    for part in parts:
        table = HeavyHitters(capacity)
        for key, weight in part:
            table.add(key, weight)
        tables.append(table)
    rows, (delta,) = merged(tables)
    truth = _truth([u for part in parts for u in part])
    assert delta * (capacity + 1) <= sum(truth.values())
    for key, true in truth.items():
        assert rows.get(key, 0) <= true <= rows.get(key, 0) + delta


def test_heavy_keys_survive_a_long_tail() -> None:
    table = HeavyHitters(4)
    for i in range(2000):
        table.add("hot", 3)
        table.add(f"tail{i}", 1)
    assert table.top(1) == [("hot", table.estimate("hot"))]
    assert table.estimate("hot") >= 6000 - table.decrement[0]


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=5))
def test_pack_round_trips(values: list[int]) -> None:
    row = pack(values)
    assert unpack(row, len(values)) == values
    assert [lane(row, j) for j in range(len(values))] == values


def test_rescale_multiplies_each_column_and_drops_zero_rows() -> None:
    table = HeavyHitters(10, width=2)
    table.add("a", pack([1000, 8]))
    table.add("b", pack([1, 1]))
    table.rescale([1 << 31, 1 << 30], 32)  # x 1/2 and x 1/4, rounding down
    assert unpack(table.counters["a"], 2) == [500, 2]
    assert "b" not in table.counters


def test_decrement_prune_keeps_the_top() -> None:
    kept, delta = decrement_prune({"a": 10, "b": 7, "c": 2, "d": 1}, 2)
    assert (kept, delta) == ({"a": 8, "b": 5}, 2)
    assert decrement_prune({"a": 1}, 2) == ({"a": 1}, 0)


@settings(max_examples=40, deadline=None)
@given(stream=updates, capacity=st.integers(1, 5))
def test_state_round_trips_and_continues_identically(
    stream: list[tuple[str, int]], capacity: int
) -> None:
    half = len(stream) // 2
    table = HeavyHitters(capacity, width=2)
    for key, weight in stream[:half]:
        table.add(key, pack([weight, 2 * weight]))
    data = msgspec.msgpack.encode(table.to_state())
    copy = HeavyHitters.from_state(capacity, 2, msgspec.msgpack.decode(data))
    for key, weight in stream[half:]:
        table.add(key, pack([weight, 2 * weight]))
        copy.add(key, pack([weight, 2 * weight]))
    assert copy.counters == table.counters
    assert (copy.decrement, copy.removed) == (table.decrement, table.removed)
