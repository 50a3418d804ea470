"""Constant work: the remote sees the same reads whatever the local hit ratio.

The count is Redis's own (``INFO commandstats``, ``cmdstat_mget``), not the store's.
"""

from __future__ import annotations

import time

import pytest
import redis

from hotshelf.embeddings import LocalTier, RedisTier, TwoTierStore
from tests.embeddings.data import DIM, keyed

pytestmark = pytest.mark.redis

ITEMS = [f"item-{i}" for i in range(2000)]
REQUESTS = [ITEMS[start : start + 50] for start in range(0, 2000, 50)] * 5  # 200


def _mget_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_mget", {"calls": 0})["calls"])


def _run(redis_url: str, local: LocalTier) -> tuple[int, dict[str, int]]:
    """Remote MGETs the server saw for ``REQUESTS``, and the store's stats."""
    client = redis.Redis.from_url(redis_url)
    client.config_resetstat()
    with TwoTierStore(local, RedisTier(redis_url, DIM), remote_deadline_ms=5000) as store:
        for keys in REQUESTS:
            fetch = store.get_many(keys)
            assert fetch.found.all()
            time.sleep(0.001)  # requests arrive, they are not a tight loop
        stats = store.stats()
    calls = _mget_calls(client)  # close() waited for the reads still in flight
    client.close()
    return calls, stats


def test_remote_reads_do_not_depend_on_the_hit_ratio(redis_url: str) -> None:
    with RedisTier(redis_url, DIM) as loader:
        loader.put_many(ITEMS, keyed(ITEMS))

    # One row: no request of 50 keys can ever be a full local hit.
    cold_calls, cold = _run(redis_url, LocalTier(DIM, capacity=1, seed=1))
    warm_local = LocalTier(DIM, capacity=len(ITEMS), seed=1)
    warm_local.put_many(ITEMS, keyed(ITEMS))
    warm_calls, warm = _run(redis_url, warm_local)

    assert cold["full_local_hits"] == 0
    assert warm["full_local_hits"] == warm["requests"] == len(REQUESTS)
    assert cold_calls == cold["remote_reads"]
    assert warm_calls == warm["remote_reads"]
    assert abs(warm_calls - cold_calls) <= 0.1 * cold_calls
    assert cold_calls >= 0.9 * len(REQUESTS)
