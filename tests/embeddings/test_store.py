"""``TwoTierStore``: what a request gets back, write-through, refresh, metrics.

The remote tier here is a real ``MmapTier`` (a closed one is a remote that fails);
the Redis outages live in ``test_store_chaos.py``, the remote read count in
``test_store_constant_work.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from hotshelf.embeddings import Fetch, FoundMask, LocalTier, MmapTier, TwoTierStore, Vectors
from hotshelf.errors import ConfigError, UnavailableError
from tests.embeddings.data import DIM, keyed, wait_idle

HOT = [f"item-{i}" for i in range(20)]
COLD = [f"item-{i}" for i in range(100, 120)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TwoTierStore]:
    """HOT in both tiers, COLD in the remote tier only."""
    remote = MmapTier(tmp_path / "remote", DIM, fsync=False)
    remote.put_many(COLD, keyed(COLD))
    two = TwoTierStore(LocalTier(DIM, 1000, seed=1), remote, remote_deadline_ms=5000)
    two.put_many(HOT, keyed(HOT))
    yield two
    two.close()


def _check_values(fetch: Fetch, keys: list[str]) -> None:
    want = keyed(keys)
    assert (fetch.vectors[fetch.found] == want[fetch.found]).all()
    assert not fetch.vectors[~fetch.found].any()
    assert ((fetch.from_local | fetch.from_remote) == fetch.found).all()


def test_a_full_local_hit_answers_locally_and_still_reads_the_remote(store: TwoTierStore) -> None:
    for _ in range(5):
        fetch = store.get_many(HOT)
        assert fetch.found.all()
        assert fetch.from_local.all()
        assert not fetch.degraded
        _check_values(fetch, HOT)
    wait_idle(store)
    stats = store.stats()
    assert stats["requests"] == stats["full_local_hits"] == stats["remote_reads"] == 5
    assert stats["local_hits"] == stats["keys"] == 100
    assert stats["degraded_requests"] == stats["degraded"] == stats["in_flight"] == 0


def test_a_miss_is_answered_by_the_remote_and_refreshes_the_local_tier(
    store: TwoTierStore,
) -> None:
    keys = HOT[:5] + COLD[:5]
    fetch = store.get_many(keys)
    assert fetch.found.all()
    assert not fetch.degraded
    _check_values(fetch, keys)
    wait_idle(store)
    assert len(store.local) == len(HOT) + 5
    again = store.get_many(keys)
    assert again.from_local.all()
    _check_values(again, keys)


def test_keys_in_neither_tier_are_not_found(store: TwoTierStore) -> None:
    keys = ["item-900", HOT[0], COLD[0], "item-901"]
    fetch = store.get_many(keys)
    assert fetch.found.tolist() == [False, True, True, False]
    assert not fetch.degraded
    _check_values(fetch, keys)


def test_the_remote_is_the_source_of_truth(store: TwoTierStore) -> None:
    # Another process rewrites one vector and deletes another behind this store's back.
    store.remote.put_many([HOT[0]], np.full((1, DIM), 42.0, np.float32))
    store.remote.delete_many([HOT[1]])
    store.get_many(HOT[:2])  # a full local hit, maybe answered before the remote
    wait_idle(store)
    second = store.get_many(HOT[:2])
    assert second.found.tolist() == [True, False]
    assert (second.vectors[0] == 42.0).all()


def test_writes_go_through_to_both_tiers(store: TwoTierStore) -> None:
    keys = ["item-500", "item-501"]
    store.put_many(keys, keyed(keys))
    for tier in (store.remote, store.local):
        got, found = tier.get_many(keys)
        assert found.all()
        assert (got == keyed(keys)).all()
    store.delete_many([*keys, "item-999"])
    for tier in (store.remote, store.local):
        assert not tier.get_many(keys)[1].any()


def test_a_failing_remote_degrades_to_the_local_tier(store: TwoTierStore) -> None:
    store.remote.close()  # every remote read now raises UnavailableError
    keys = HOT[:3] + COLD[:3]
    fetch = store.get_many(keys)
    assert fetch.found.tolist() == [True] * 3 + [False] * 3
    assert fetch.degraded
    _check_values(fetch, keys)
    hit = store.get_many(HOT)  # a full hit is answered whatever the remote does
    assert hit.found.all()
    wait_idle(store)
    stats = store.stats()
    assert stats["degraded_requests"] == 1
    assert stats["remote_errors"] == stats["remote_reads"] == 2
    assert stats["degraded"] == 1
    with pytest.raises(UnavailableError):  # a write must not land in the local tier alone
        store.put_many(["item-600"], keyed(["item-600"]))
    assert not store.local.get_many(["item-600"])[1].any()


def test_the_async_read_answers_the_same(store: TwoTierStore) -> None:
    async def reads() -> list[Fetch]:
        return [
            await store.aget_many(HOT),
            await store.aget_many(HOT[:2] + COLD[10:12] + ["item-900"]),
            await store.aget_many([]),
        ]

    hit, miss, empty = asyncio.run(reads())
    assert hit.from_local.all()
    assert not hit.degraded
    _check_values(hit, HOT)
    assert miss.found.tolist() == [True] * 4 + [False]
    assert not miss.degraded
    _check_values(miss, HOT[:2] + COLD[10:12] + ["item-900"])
    assert empty.vectors.shape == (0, DIM)
    store.remote.close()
    degraded = asyncio.run(store.aget_many(HOT[:2] + COLD[15:17]))
    assert degraded.degraded
    assert degraded.found.tolist() == [True, True, False, False]


class _GatedTier(MmapTier):
    """A remote whose reads wait until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, DIM, fsync=False)
        self.gate = threading.Event()
        self.reading = threading.Event()

    def get_many(self, keys: Sequence[str]) -> tuple[Vectors, FoundMask]:
        self.reading.set()
        self.gate.wait(10)
        return super().get_many(keys)


def test_a_cancelled_async_read_frees_its_slot_and_breaks_nothing(tmp_path: Path) -> None:
    remote = _GatedTier(tmp_path)
    remote.put_many(COLD, keyed(COLD))
    with TwoTierStore(LocalTier(DIM, 100), remote, remote_deadline_ms=10_000) as store:

        async def cancel_while_reading() -> None:
            task = asyncio.ensure_future(store.aget_many(COLD[:3]))
            await asyncio.get_running_loop().run_in_executor(None, remote.reading.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_while_reading())
        remote.gate.set()  # the read ends after its request gave up on it
        wait_idle(store)
        assert store.stats()["in_flight"] == 0
        fetch = store.get_many(COLD[3:6])  # the I/O threads still serve
        assert fetch.found.all()
        _check_values(fetch, COLD[3:6])
        again = asyncio.run(store.aget_many(COLD[:3]))
        assert again.found.all()


def test_a_nowait_read_answers_locally_and_brings_the_misses_in(tmp_path: Path) -> None:
    remote = _GatedTier(tmp_path)
    remote.put_many(COLD, keyed(COLD))
    with TwoTierStore(LocalTier(DIM, 100), remote, remote_deadline_ms=10_000) as store:
        store.put_many(HOT[:2], keyed(HOT[:2]))
        keys = HOT[:2] + COLD[:2]
        fetch = store.get_many_nowait(keys)  # returns while the remote read is held
        assert fetch.found.tolist() == [True, True, False, False]
        assert fetch.from_local.tolist() == fetch.found.tolist()
        assert not fetch.degraded
        _check_values(fetch, keys)
        assert remote.reading.wait(10)  # the request's remote read was issued all the same
        remote.gate.set()
        wait_idle(store)
        assert store.stats()["remote_reads"] == 1
        again = store.get_many_nowait(keys)  # that read brought the misses in
        assert again.found.all()
        _check_values(again, keys)


def test_empty_requests_do_no_work(store: TwoTierStore) -> None:
    fetch = store.get_many([])
    assert fetch.vectors.shape == (0, DIM)
    assert fetch.found.shape == (0,)
    assert store.stats()["requests"] == store.stats()["remote_reads"] == 0


def test_bulk_loads_read_the_remote_and_leave_the_local_tier_alone(store: TwoTierStore) -> None:
    vectors, found = store.load_many([*COLD, "item-900"])
    assert found.tolist() == [True] * len(COLD) + [False]
    assert (vectors[:-1] == keyed(COLD)).all()
    assert len(store.local) == len(HOT)
    assert store.stats()["remote_reads"] == 0
    store.remote.close()
    with pytest.raises(UnavailableError):
        store.load_many(COLD)


def test_metrics_reach_a_prometheus_registry(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    remote = MmapTier(tmp_path, DIM, fsync=False)
    with TwoTierStore(LocalTier(DIM, 100), remote, registry=registry) as store:
        store.put_many(HOT, keyed(HOT))
        store.get_many(HOT)
        store.get_many(HOT[:1])
        wait_idle(store)

        def sample(name: str) -> float | None:
            return registry.get_sample_value(f"hotshelf_embedding_store_{name}")

        assert sample("requests_total") == 2
        assert sample("remote_reads_total") == 2
        assert sample("local_hits_total") == 21
        assert sample("degraded_requests_total") == 0
        assert sample("degraded") == 0
        assert sample("in_flight") == 0
        assert sample("local_keys") == len(HOT)
        assert sample("local_evictions_total") == 0


def test_the_tiers_must_agree_on_dim(tmp_path: Path) -> None:
    remote = MmapTier(tmp_path, DIM + 1)
    with pytest.raises(ConfigError, match="dim"):
        TwoTierStore(LocalTier(DIM, 10), remote)
    with pytest.raises(ConfigError, match="positive"):
        TwoTierStore(LocalTier(DIM + 1, 10), remote, max_in_flight=0)
    remote.close()


def test_close_closes_both_tiers(store: TwoTierStore) -> None:
    store.get_many(HOT)
    store.close()
    assert len(store.local) == 0
    with pytest.raises(UnavailableError, match="closed"):
        store.remote.get_many(HOT)
    fetch = store.get_many(HOT)  # a closed store issues no reads: degraded, no exception
    assert fetch.degraded
    assert not fetch.found.any()
