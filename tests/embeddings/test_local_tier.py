"""``LocalTier``: bounded memory, TinyLFU admission and aging, thread safety."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from hotshelf.embeddings import LocalTier
from hotshelf.errors import ValidationError
from tests.embeddings.data import DIM, keyed, unit_vectors


def _read_and_offer(tier: LocalTier, keys: list[str]) -> None:
    """What the store does with a request: read, then offer what was missing."""
    _, found = tier.get_many(keys)
    missing = [key for key, hit in zip(keys, found, strict=True) if not hit]
    if missing:
        tier.put_many(missing, keyed(missing))


def test_never_holds_more_than_capacity() -> None:
    tier = LocalTier(DIM, capacity=64, seed=1)
    for start in range(0, 5000, 50):
        keys = [f"item-{i}" for i in range(start, start + 50)]
        _read_and_offer(tier, keys)
        _read_and_offer(tier, keys)  # read twice: frequent enough to push others out
        assert len(tier) <= 64
    assert len(tier) == 64
    assert tier.evictions > 0
    every = [f"item-{i}" for i in range(5000)]
    got, found = tier.get_many(every)
    assert found.sum() == 64
    assert (got[found] == keyed([k for k, f in zip(every, found, strict=True) if f])).all()


def test_popular_items_survive_a_scan_of_one_off_keys() -> None:
    # Between two reads of the popular items come 200 one-off keys, twice the capacity:
    # an LRU would lose every popular item each round. 20,000 one-off keys in all.
    tier = LocalTier(DIM, capacity=100, seed=2)
    popular = [f"item-{i}" for i in range(60)]
    one_off = (f"item-{i}" for i in range(1000, 10**9))
    _read_and_offer(tier, popular)
    for _ in range(100):
        assert tier.get_many(popular)[1].all()
        for _ in range(4):
            _read_and_offer(tier, [next(one_off) for _ in range(50)])
    assert tier.rejections > 0
    assert len(tier) == 100  # the room the popular items leave is used


def test_a_new_favourite_gets_in_once_it_is_read_more_often() -> None:
    tier = LocalTier(DIM, capacity=10, seed=3)
    _read_and_offer(tier, [f"item-{i}" for i in range(10)])  # full, each read once
    newcomer = ["item-99"]
    _read_and_offer(tier, newcomer)
    assert not tier.get_many(newcomer)[1].any()  # read once: no better than the others
    _read_and_offer(tier, newcomer)  # now read three times: beats any once-read row
    got, found = tier.get_many(newcomer)
    assert found.all()
    assert (got == 99.0).all()
    assert len(tier) == 10


def test_every_read_counts_though_many_wait_for_one_write() -> None:
    # Full hits are not written back, so the reads of hundreds of requests reach the
    # sketch together: a key read in five of them counts five, not once.
    tier = LocalTier(DIM, capacity=1, seed=8)
    tier.put_many(["item-1"], keyed(["item-1"]))
    for _ in range(2):
        tier.get_all(["item-1"])
    for _ in range(5):
        assert tier.get_all(["item-2"]) == (None, 0)
    tier.put_many(["item-2"], keyed(["item-2"]))  # 5 reads against 2: it replaces item-1
    assert tier.get_many(["item-2", "item-1"])[1].tolist() == [True, False]


def test_reads_never_wait_for_reads_being_counted() -> None:
    tier = LocalTier(DIM, capacity=8, seed=9)
    held = ["item-1"]
    tier.put_many(held, keyed(held))
    tier.get_all(held)
    new = ["item-2"]
    with tier._count_lock:  # a count that takes as long as this test wants
        writer = threading.Thread(target=tier.put_many, args=(new, keyed(new)))
        writer.start()
        deadline = time.monotonic() + 10
        while tier._pending_keys and time.monotonic() < deadline:
            time.sleep(0.001)
        assert not tier._pending_keys  # the writer took the reads and is counting them
        got, stored = tier.get_all(held)  # blocked for good if counting held the tier
        assert stored == 1
        assert got is not None
        assert (got == 1.0).all()
    writer.join(timeout=10)
    assert tier.get_many(new)[1].all()


def test_frequencies_age_so_yesterdays_hits_make_room() -> None:
    tier = LocalTier(DIM, capacity=20, seed=4)
    old = [f"item-{i}" for i in range(20)]
    for _ in range(100):
        _read_and_offer(tier, old)
    new = [f"item-{i}" for i in range(100, 120)]
    # Without aging the old counts (100) would keep the new set (60) out for good.
    for _ in range(60):
        _read_and_offer(tier, new)
    _, found = tier.get_many(new)
    assert found.all()


def test_writes_update_stored_keys_in_place_even_when_full() -> None:
    tier = LocalTier(DIM, capacity=4, seed=5)
    keys = [f"item-{i}" for i in range(4)]
    tier.put_many(keys, keyed(keys))
    tier.put_many(["item-2"], np.full((1, DIM), 7.0, np.float32))
    got, found = tier.get_many(keys)
    assert found.all()
    assert got[:, 0].tolist() == [0.0, 1.0, 7.0, 3.0]


def test_a_key_never_read_does_not_push_out_read_ones() -> None:
    tier = LocalTier(DIM, capacity=4, seed=6)
    keys = [f"item-{i}" for i in range(4)]
    _read_and_offer(tier, keys)
    tier.put_many(["item-9"], keyed(["item-9"]))  # written, never read
    assert tier.get_many(keys)[1].all()
    assert tier.rejections == 1


def test_deleted_rows_are_reused() -> None:
    tier = LocalTier(DIM, capacity=3, seed=7)
    tier.put_many(["item-0", "item-1", "item-2"], keyed(["item-0", "item-1", "item-2"]))
    assert tier.delete_many(["item-1"]) == 1
    tier.put_many(["item-5"], keyed(["item-5"]))  # takes the free row, no eviction needed
    got, found = tier.get_many(["item-0", "item-1", "item-2", "item-5"])
    assert found.tolist() == [True, False, True, True]
    assert got[:, 0].tolist() == [0.0, 0.0, 2.0, 5.0]
    assert tier.evictions == 0


def test_refresh_writes_found_keys_and_drops_missing_ones() -> None:
    tier = LocalTier(DIM, capacity=10, seed=8)
    tier.put_many(["item-1", "item-2"], keyed(["item-1", "item-2"]))
    answer = np.full((3, DIM), 5.0, np.float32)
    tier.refresh(["item-1", "item-2", "item-3"], answer, np.array([True, False, True]))
    got, found = tier.get_many(["item-1", "item-2", "item-3"])
    assert found.tolist() == [True, False, True]
    assert got[:, 0].tolist() == [5.0, 0.0, 5.0]


def test_close_empties_the_tier() -> None:
    tier = LocalTier(DIM, capacity=10)
    tier.put_many(["item-1"], keyed(["item-1"]))
    tier.close()
    assert len(tier) == 0
    assert not tier.get_many(["item-1"])[1].any()
    tier.put_many(["item-2"], keyed(["item-2"]))
    assert len(tier) == 0


@pytest.mark.parametrize(("capacity", "sample"), [(0, 8), (10, 0)])
def test_capacity_and_sample_must_be_positive(capacity: int, sample: int) -> None:
    with pytest.raises(ValidationError, match="must be positive"):
        LocalTier(DIM, capacity, sample=sample)


def test_readers_and_writers_on_threads_see_consistent_rows() -> None:
    tier = LocalTier(DIM, capacity=200, seed=9)
    keys = [f"item-{i}" for i in range(400)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        rng = np.random.default_rng()
        while not stop.is_set():
            chosen = [keys[i] for i in rng.integers(0, 400, 50)]
            got, found = tier.get_many(chosen)
            want = keyed(chosen)
            if not (got[found] == want[found]).all() or got[~found].any():
                errors.append(AssertionError("a row served for the wrong key"))

    def write() -> None:
        rng = np.random.default_rng()
        for _ in range(300):
            chosen = [keys[i] for i in rng.integers(0, 400, 50)]
            tier.put_many(chosen, keyed(chosen))
            tier.delete_many(chosen[:5])

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        write()
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert not errors
    assert len(tier) <= 200


def test_gets_return_copies() -> None:
    tier = LocalTier(DIM, capacity=10)
    tier.put_many(["item-1"], unit_vectors(1))
    got, _ = tier.get_many(["item-1"])
    got[:] = 0.0
    assert tier.get_many(["item-1"])[0].tobytes() == unit_vectors(1).tobytes()
