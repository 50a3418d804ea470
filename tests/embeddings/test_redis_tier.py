"""``RedisTier``: the layout in Redis, one MGET per read, bad values, errors."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from hotshelf.embeddings import RedisTier
from hotshelf.errors import UnavailableError
from hotshelf.testing import free_port
from tests.embeddings.data import DIM, keyed, unit_vectors

pytestmark = pytest.mark.redis


def _mget_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_mget", {"calls": 0})
    return int(stats["calls"])


def test_values_are_raw_little_endian_float32(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with RedisTier(redis_url, DIM, prefix="p:") as tier:
        tier.put_many(["item-1"], unit_vectors(1))
    assert client.get("p:item-1") == unit_vectors(1).astype("<f4").tobytes()
    client.close()


def test_one_mget_per_read(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = [f"item-{i}" for i in range(50)]
    with RedisTier(redis_url, DIM) as tier:
        tier.put_many(keys, keyed(keys))
        before = _mget_calls(client)
        for _ in range(5):
            tier.get_many([*keys, "missing"])
        tier.get_many([])  # nothing to read: no command at all
        assert _mget_calls(client) - before == 5
    client.close()


def test_values_of_the_wrong_length_are_not_found_and_counted(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with RedisTier(redis_url, DIM, prefix="p:") as tier:
        tier.put_many(["item-1", "item-2"], keyed(["item-1", "item-2"]))
        client.set("p:item-3", unit_vectors(1, dim=DIM * 2).tobytes())  # another model's
        client.set("p:item-4", b"garbage")
        got, found = tier.get_many(["item-1", "item-3", "item-2", "item-4", "item-5"])
        assert found.tolist() == [True, False, True, False, False]
        assert (got[[0, 2]] == keyed(["item-1", "item-2"])).all()
        assert not got[[1, 3, 4]].any()
        assert tier.bad_values == 2
        _, found = tier.get_many(["item-3"])  # all bad: still no crash
        assert not found.any()
        assert tier.bad_values == 3
    client.close()


def test_prefixes_keep_stores_apart(redis_url: str) -> None:
    with (
        RedisTier(redis_url, DIM, prefix="a*[x]:") as first,
        RedisTier(redis_url, DIM, prefix="a") as second,
    ):
        first.put_many(["item-1", "item-2"], keyed(["item-1", "item-2"]))
        second.put_many(["item-1"], np.zeros((1, DIM), np.float32))
        assert len(first) == 2  # glob characters in a prefix are matched literally
        assert len(second) == 3  # "a" is a prefix of "a*[x]:" too: SCAN sees both
        assert (first.get_many(["item-1"])[0] == 1.0).all()
        assert first.delete_many(["item-1", "item-1"]) == 1
        assert second.get_many(["item-1"])[1].all()


def test_large_writes_are_chunked(redis_url: str) -> None:
    keys = [f"item-{i}" for i in range(2500)]
    with RedisTier(redis_url, DIM) as tier:
        tier.put_many(keys, keyed(keys))
        got, found = tier.get_many(keys)
        assert found.all()
        assert (got == keyed(keys)).all()
        assert tier.delete_many(keys) == 2500
        assert len(tier) == 0


def test_an_unreachable_server_is_unavailable() -> None:
    with RedisTier(f"redis://127.0.0.1:{free_port()}/0", DIM) as tier:
        with pytest.raises(UnavailableError, match="unreachable") as info:
            tier.get_many(["item-1"])
        assert info.value.status == 503
        with pytest.raises(UnavailableError):
            tier.put_many(["item-1"], keyed(["item-1"]))
        with pytest.raises(UnavailableError):
            tier.delete_many(["item-1"])
