"""``TwoTierStore`` while its Redis is killed, stopped and brought back.

Each test runs its own redis-server (``own_redis``): killing the session's server
would break every test after it. Nothing here asserts a latency: the checks are that
no request raises, what each answer holds, and what the counters say.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from hotshelf.embeddings import Fetch, LocalTier, RedisTier, TwoTierStore
from hotshelf.testing import RedisServer
from tests.embeddings.data import DIM, keyed, wait_idle

pytestmark = pytest.mark.redis

HOT = [f"item-{i}" for i in range(40)]
COLD = [f"item-{i}" for i in range(1000, 6000)]


def _store(server: RedisServer, **settings: float) -> TwoTierStore:
    """HOT in both tiers, COLD in Redis only."""
    with RedisTier(server.url, DIM) as loader:
        loader.put_many(HOT + COLD, keyed(HOT + COLD))
    local = LocalTier(DIM, capacity=100, seed=1)
    local.put_many(HOT, keyed(HOT))
    read_timeout_s = settings.pop("read_timeout_s", 0.3)
    remote = RedisTier(
        server.url, DIM, read_timeout_s=read_timeout_s, connect_timeout_s=read_timeout_s
    )
    return TwoTierStore(local, remote, **settings)  # type: ignore[arg-type]


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@dataclass
class Load:
    """Requests in a loop on a thread: every other one a full local hit, the others
    with 10 keys only Redis has (new ones each time)."""

    store: TwoTierStore
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        cold = iter(COLD)
        while not self.stop.is_set():
            keys = HOT if self.answers % 2 == 0 else HOT[:20] + [next(cold) for _ in range(10)]
            try:
                self._check(keys, self.store.get_many(keys))
            except Exception as exc:  # noqa: BLE001 - the test reports any exception
                self.failures.append(f"request raised {exc!r}")
            self.answers += 1
            time.sleep(0.0005)

    def _check(self, keys: list[str], fetch: Fetch) -> None:
        want = keyed(keys)
        if not (fetch.vectors[fetch.found] == want[fetch.found]).all():
            self.failures.append("a vector served for the wrong key")
        if not fetch.found[: min(len(keys), 20)].all():
            self.failures.append("a key in the local tier was not found")
        if not fetch.degraded and not fetch.found.all():
            self.failures.append("a key in Redis was not found while Redis was up")

    def wait_answers(self, more: int) -> None:
        target = self.answers + more
        _wait_for(lambda: self.answers >= target, f"{more} more answers")


@pytest.fixture
def load_on(own_redis: RedisServer) -> Iterator[Load]:
    store = _store(own_redis, remote_deadline_ms=2000, max_in_flight=4)
    load = Load(store)
    thread = threading.Thread(target=load.run)
    thread.start()
    yield load
    load.stop.set()
    thread.join()
    store.close()


def _degraded(load: Load) -> int:
    return load.store.stats()["degraded_requests"]


def _recovers(load: Load) -> None:
    """The next successful read clears the gauge; then no request is degraded any more."""
    _wait_for(lambda: load.store.stats()["degraded"] == 0, "the degraded gauge to clear")
    load.wait_answers(10)  # requests begun during the outage are all answered
    before = _degraded(load)
    load.wait_answers(40)
    assert _degraded(load) == before


def test_redis_killed_then_stopped_under_load(own_redis: RedisServer, load_on: Load) -> None:
    load = load_on
    assert own_redis.proc is not None
    load.wait_answers(40)
    assert _degraded(load) == 0

    own_redis.proc.kill()  # SIGKILL
    own_redis.proc.wait()
    load.wait_answers(40)
    assert _degraded(load) > 0
    assert load.store.stats()["remote_errors"] > 0
    assert load.store.stats()["degraded"] == 1

    own_redis.start()  # same port, same data
    _recovers(load)

    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        before, errors = _degraded(load), load.store.stats()["remote_errors"]
        load.wait_answers(12)  # half of them wait out the read timeout
        assert _degraded(load) > before
        assert load.store.stats()["remote_errors"] > errors  # reads time out
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    _recovers(load)
    assert not load.failures, sorted(set(load.failures))


def test_a_stalled_remote_costs_a_sync_miss_at_most_the_read_timeout(
    own_redis: RedisServer,
) -> None:
    """A sync miss reads on the calling thread: bounded by the tier's read timeout, which
    ``open_store`` sets to the deadline."""
    assert own_redis.proc is not None
    with _store(own_redis, remote_deadline_ms=50, read_timeout_s=0.05) as store:
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            fetch = store.get_many(HOT[:5] + COLD[:5])
            waited = time.monotonic() - started
            stats = store.stats()
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        assert waited < 5.0  # the timeout (and one reconnect), not the stall
        assert fetch.degraded
        assert fetch.found.tolist() == [True] * 5 + [False] * 5
        assert stats["deadline_misses"] == 1
        assert stats["remote_errors"] == 1
        assert stats["in_flight"] == 0
        _recovers_with(store, COLD[:5])


def test_a_stalled_remote_costs_an_async_miss_at_most_the_deadline(
    own_redis: RedisServer,
) -> None:
    """An async miss awaits the pool's read for at most the deadline, whatever the socket
    timeout; the late answer still refreshes the local tier."""
    assert own_redis.proc is not None
    with _store(own_redis, remote_deadline_ms=50, read_timeout_s=30.0) as store:
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:

            async def read_while_ticking() -> tuple[Fetch, int]:
                ticks = 0

                async def tick() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.001)
                        ticks += 1

                ticker = asyncio.create_task(tick())
                fetch = await store.aget_many(HOT[:5] + COLD[5:10])
                ticker.cancel()
                return fetch, ticks

            afetch, ticks = asyncio.run(read_while_ticking())
            assert afetch.degraded
            assert ticks > 0  # the loop ran while the read waited
            assert store.stats()["deadline_misses"] == 1
            assert store.stats()["in_flight"] == 1  # the read still waits on the server
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        wait_idle(store)
        assert store.local.get_many(COLD[5:10])[1].all()  # the late answer was applied
        assert store.stats()["remote_errors"] == 0


def _recovers_with(store: TwoTierStore, keys: list[str]) -> None:
    deadline = time.monotonic() + 30
    while store.get_many(keys).degraded:
        assert time.monotonic() < deadline, store.stats()
        time.sleep(0.05)
    assert store.stats()["degraded"] == 0


def test_with_every_slot_busy_requests_do_not_queue(own_redis: RedisServer) -> None:
    assert own_redis.proc is not None
    with _store(own_redis, remote_deadline_ms=50, max_in_flight=1, read_timeout_s=30.0) as store:
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            assert not store.get_many(HOT).degraded  # its read takes the only slot
            full_hit = store.get_many(HOT)
            miss = store.get_many(COLD[:3])
            stats = store.stats()
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        assert full_hit.degraded  # answered, but no read could be issued
        assert full_hit.found.all()
        assert miss.degraded
        assert not miss.found.any()
        assert stats["remote_skipped"] == 2
        assert stats["remote_reads"] == 1
        assert stats["deadline_misses"] == 0  # nothing was waited for
        wait_idle(store)
        fetch = store.get_many(COLD[:3])
        assert not fetch.degraded
        assert (fetch.vectors == keyed(COLD[:3])).all()
        assert store.stats()["degraded"] == 0
        assert np.array_equal(fetch.found, np.ones(3, np.bool_))
