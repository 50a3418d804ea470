"""Raw event-log throughput: the file log and Redis Streams side by side, no HTTP.

    python -m benchmarks.bench_log [--seconds 2] [--out FILE]

Records are real stored events (``decode_events`` -> ``normalize`` ->
``encode_stored_event``, ~165 B each), appended in batches of 100 by 1 thread, 16
threads and 32 asyncio tasks, to: the file log with fsync on (the default) and off,
and a private redis-server with AOF ``everysec`` (the default) and ``always``. A
``LogObserver`` counts group commits (one fsync each on the file log with fsync on):
``batches_per_group_commit`` shows how far concurrent appenders share a sync. Then
each log is read back from offset 0 by a consumer (``poll`` of 1000, no commits).
Every phase runs ``--seconds`` (about 16 phases, under a minute by default). JSON on
stdout; ratios are against the file log with fsync on. Redis is skipped, with a note,
when there is no redis-server binary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._servers import private_redis
from benchmarks.bench_events import make_body
from hotshelf.config import Config, EventsConfig, LogConfig, load_config
from hotshelf.events import Event, decode_events, encode_stored_event, normalize
from hotshelf.log import EventLog, LogObserver, open_log

BATCH = 100
BASELINE = "file_fsync_on"
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class Shape:
    """How appends are issued: ``workers`` threads calling ``append`` or tasks awaiting it."""

    name: str
    mode: str  # "sync" or "async"
    workers: int


SYNC_1 = Shape("sync_1_thread", "sync", 1)
SYNC_16 = Shape("sync_16_threads", "sync", 16)
ASYNC_32 = Shape("async_32_tasks", "async", 32)
SHAPES = (SYNC_1, SYNC_16, ASYNC_32)


class SyncCounter(LogObserver):
    """Counts group commits and the append batches they carried."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commits = 0
        self._batches = 0

    def on_sync(self, batches: int, records: int, bytes_: int, seconds: float) -> None:
        with self._lock:
            self._commits += 1
            self._batches += batches

    def take(self) -> tuple[int, int]:
        """(group commits, batches) since the last call."""
        with self._lock:
            counts = (self._commits, self._batches)
            self._commits = self._batches = 0
        return counts


def make_records(events: Sequence[Event], cfg: EventsConfig | None = None) -> list[bytes]:
    """The bytes the ingest path appends for ``events`` received now: normalised, encoded."""
    now_ms = time.time_ns() // 1_000_000
    return [encode_stored_event(s) for s in normalize(events, now_ms, cfg or EventsConfig())]


def make_batches(count: int, batch: int = BATCH) -> list[list[bytes]]:
    """``count`` batches of ``batch`` records from realistic NDJSON bodies."""
    cfg = Config()
    out = []
    for seed in range(count):
        events = decode_events(make_body(batch, seed), NDJSON, cfg.events, cfg.server)
        out.append(make_records(events, cfg.events))
    return out


def _append_sync(log: EventLog, batches: list[list[bytes]], deadline: float, threads: int) -> int:
    def one(k: int) -> int:
        n = 0
        while time.perf_counter() < deadline:
            log.append(batches[(k + n * threads) % len(batches)])
            n += 1
        return n

    if threads == 1:
        return one(0)
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(one, range(threads)))


def _append_async(log: EventLog, batches: list[list[bytes]], deadline: float, tasks: int) -> int:
    async def one(k: int) -> int:
        n = 0
        while time.perf_counter() < deadline:
            await log.append_async(batches[(k + n * tasks) % len(batches)])
            n += 1
        return n

    async def many() -> int:
        return sum(await asyncio.gather(*(one(k) for k in range(tasks))))

    return asyncio.run(many())


def append_rates(
    log: EventLog,
    batches: list[list[bytes]],
    seconds: float,
    shapes: Sequence[Shape] = SHAPES,
    counter: SyncCounter | None = None,
) -> dict[str, dict[str, Any]]:
    """Records/s appending ``batches`` for ``seconds`` in each shape (group commits if counted)."""
    out: dict[str, dict[str, Any]] = {}
    per_batch = len(batches[0])
    size = sum(len(r) for r in batches[0]) / per_batch
    for shape in shapes:
        if counter:
            counter.take()
        start = time.perf_counter()
        run = _append_sync if shape.mode == "sync" else _append_async
        done = run(log, batches, start + seconds, shape.workers)
        elapsed = time.perf_counter() - start
        row: dict[str, Any] = {
            "records_per_s": round(done * per_batch / elapsed),
            "mb_per_s": round(done * per_batch * size / elapsed / 1e6, 1),
        }
        if counter:
            commits, synced = counter.take()
            row["group_commits"] = commits
            row["batches_per_group_commit"] = round(synced / commits, 2) if commits else None
        out[shape.name] = row
    return out


def read_rate(log: EventLog, seconds: float) -> dict[str, Any]:
    """A consumer polling from offset 0 to the end (or for ``seconds``): records/s."""
    consumer = log.consumer("bench-read")
    records = size = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            got = consumer.poll(1000)
            if not got:
                break
            records += len(got)
            size += sum(len(r.value) for r in got)
    finally:
        consumer.close()
    elapsed = time.perf_counter() - start
    return {
        "records": records,
        "records_per_s": round(records / elapsed),
        "mb_per_s": round(size / elapsed / 1e6, 1),
    }


def file_config(data_dir: str, *, fsync: bool = True) -> Config:
    """Defaults (no environment, no hotshelf.toml) with the file log in ``data_dir``."""
    overrides = [f"data_dir={json.dumps(data_dir)}", f"log.fsync={str(fsync).lower()}"]
    return load_config(overrides=overrides, environ={})


def redis_config(url: str) -> Config:
    return Config(log=LogConfig(backend="redis", redis_url=url))


def bench_backend(cfg: Config, batches: list[list[bytes]], seconds: float) -> dict[str, Any]:
    counter = SyncCounter()
    with open_log(cfg, "events", observer=counter) as log:
        append = append_rates(log, batches, seconds, counter=counter)
        if cfg.log.backend == "redis":  # no group commit of its own: Redis's AOF syncs
            for row in append.values():
                del row["group_commits"], row["batches_per_group_commit"]
        return {"append": append, "read": read_rate(log, seconds)}


def _ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    base = results.get(BASELINE, {})
    ratios: dict[str, dict[str, float]] = {}
    for name, res in results.items():
        if name == BASELINE or "append" not in res:
            continue
        rows = {f"append_{k}": (v, base["append"][k]) for k, v in res["append"].items()}
        rows["read"] = (res["read"], base["read"])
        ratios[f"{name}_over_{BASELINE}"] = {
            k: round(mine["records_per_s"] / theirs["records_per_s"], 2)
            for k, (mine, theirs) in rows.items()
            if theirs["records_per_s"]
        }
    return ratios


def run(seconds: float) -> dict[str, Any]:
    batches = make_batches(50)
    backends: dict[str, Any] = {}
    for fsync in (True, False):
        with tempfile.TemporaryDirectory(prefix="hotshelf-bench-log-") as d:
            name = f"file_fsync_{'on' if fsync else 'off'}"
            backends[name] = bench_backend(file_config(d, fsync=fsync), batches, seconds)
    for appendfsync in ("everysec", "always"):
        with private_redis(appendfsync) as server:
            name = f"redis_aof_{appendfsync}"
            if server is None:
                backends[name] = {"skipped": "no redis-server binary"}
            else:
                backends[name] = bench_backend(redis_config(server.url), batches, seconds)
    record_bytes = sum(len(r) for b in batches for r in b) / (len(batches) * BATCH)
    return {
        "benchmark": "log",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {"batch": BATCH, "record_bytes": round(record_bytes), "seconds": seconds},
        "backends": backends,
        "ratios": _ratios(backends),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per phase")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = json.dumps(run(args.seconds), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
