"""Durable ingest throughput: HTTP on both log backends side by side, plus raw appends.

    python -m benchmarks.bench_ingest [--duration 10] [--concurrency 16] [--out FILE]

For each backend (embedded file log, Redis Streams) a real ``hotshelf serve`` process
is started on loopback and a load generator in a second process posts NDJSON batches
of 100 events (fresh event ids every request) for a bounded time. Reported: durable
events/s acknowledged, p50/p99 acknowledgement latency; then raw log append
throughput in-process (batches of 100 real encoded events, 1 thread and 32 concurrent
asyncio appenders). Results are JSON on stdout; ratios compare the backends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from benchmarks._loadgen import PLACEHOLDER, run_closed_loop
from hotshelf.config import Config, LogConfig, load_config
from hotshelf.events import Event, StoredEvent, encode_stored_event
from hotshelf.log import EventLog, open_log
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.testing import RedisServer, find_redis_server, free_port

BATCH = 100


def make_bodies(n_bodies: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """NDJSON bodies of BATCH simulated events with placeholder ids, and raw records."""
    sim = StoreSimulator(SimConfig(seed=seed, start_ms=int(time.time() * 1000) - 600_000))
    enc = msgspec.json.Encoder()
    events = [s.event for s in sim.events(n_bodies * BATCH)]
    bodies: list[bytes] = []
    for b in range(n_bodies):
        lines = []
        for i, ev in enumerate(events[b * BATCH : (b + 1) * BATCH]):
            ev = msgspec.structs.replace(ev, event_id=f"{b:04x}{i:03d}-" + PLACEHOLDER.decode())
            lines.append(enc.encode(ev))
        bodies.append(b"\n".join(lines))
    records = [encode_stored_event(_stored(ev, i)) for i, ev in enumerate(events[: 100 * BATCH])]
    return bodies, records


def _stored(ev: Event, i: int) -> StoredEvent:
    now = int(time.time() * 1000)
    return StoredEvent(
        event_id=f"raw-{i}",
        type=ev.type,
        ts_ms=now,
        received_ms=now,
        cookie_id=ev.cookie_id,
        user_id=ev.user_id,
        session_id=ev.session_id,
        item_id=ev.item_id,
        item_ids=ev.item_ids,
        query=ev.query,
        location=ev.location,
        device=ev.device,
        user_agent=ev.user_agent,
        ip_hash="0" * 32,
    )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def _loadgen_proc(args: tuple[Any, ...], queue: mp.Queue[dict[str, Any]]) -> None:
    port, bodies, concurrency, duration_s = args
    result = run_closed_loop(
        "127.0.0.1",
        port,
        "/v1/events",
        bodies,
        concurrency=concurrency,
        duration_s=duration_s,
        max_requests=10_000_000,
    )
    queue.put(result.summary(BATCH))


def bench_http(
    backend: str, overrides: list[str], bodies: list[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"hotshelf-bench-{backend}-") as data_dir:
        cmd = [
            sys.executable,
            "-m",
            "hotshelf",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            "--set",
            f'log.backend="{backend}"',
            "--set",
            'logging.level="warning"',
        ]
        for o in overrides:
            cmd += ["--set", o]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_ready(f"http://127.0.0.1:{port}", proc)
            # warm-up, then the measured run in a separate process (its own core)
            run_closed_loop(
                "127.0.0.1",
                port,
                "/v1/events",
                bodies[-50:],
                concurrency=4,
                duration_s=1.0,
                max_requests=200,
            )
            queue: mp.Queue[dict[str, Any]] = mp.Queue()
            worker = mp.Process(
                target=_loadgen_proc, args=((port, bodies, args.concurrency, args.duration), queue)
            )
            worker.start()
            summary = queue.get(timeout=args.duration + 60)
            worker.join()
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        summary["fsync_batches"] = _metric_sum(metrics, "hotshelf_log_sync_batches_count")
        return summary


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def bench_raw(log: EventLog, records: list[bytes], seconds: float) -> dict[str, float]:
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        log.append(batches[n % len(batches)])
        n += 1
    sync_rate = n * BATCH / (time.perf_counter() - start)

    async def many() -> int:
        done = 0
        stop = time.perf_counter() + seconds

        async def one(k: int) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await log.append_async(batches[(k + done) % len(batches)])
                done += 1

        await asyncio.gather(*(one(k) for k in range(32)))
        return done

    start = time.perf_counter()
    done = asyncio.run(many())
    async_rate = done * BATCH / (time.perf_counter() - start)
    return {
        "sync_1_thread_records_per_s": round(sync_rate),
        "async_32_tasks_records_per_s": round(async_rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    n_bodies = 400
    bodies, records = make_bodies(n_bodies)
    binary = find_redis_server()
    results: dict[str, Any] = {
        "benchmark": "ingest",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {"batch": BATCH, "concurrency": args.concurrency, "duration_s": args.duration},
        "http": {},
        "raw_append": {},
    }
    results["http"]["file"] = bench_http("file", [], bodies, args)
    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(overrides=[f"data_dir={json.dumps(d)}"], environ={})
        with open_log(cfg, "events") as log:
            results["raw_append"]["file"] = bench_raw(log, records, args.raw_seconds)
    if binary is None:
        results["http"]["redis"] = {"skipped": "no redis-server binary"}
    else:
        with tempfile.TemporaryDirectory() as rdir:
            server = RedisServer(binary, Path(rdir))
            server.start()
            try:
                url_opt = f'log.redis_url="{server.url}"'
                results["http"]["redis"] = bench_http("redis", [url_opt], bodies, args)
                cfg = Config(log=LogConfig(backend="redis", redis_url=server.url))
                with open_log(cfg, "events") as log:
                    results["raw_append"]["redis"] = bench_raw(log, records, args.raw_seconds)
            finally:
                server.stop()
    f, r = results["http"]["file"], results["http"].get("redis", {})
    if r.get("events_per_s"):
        results["ratios"] = {
            "file_over_redis_events_per_s": round(f["events_per_s"] / r["events_per_s"], 2),
            "file_over_redis_ack_p99": round(f["ack_p99_ms"] / r["ack_p99_ms"], 2),
        }
    results["targets"] = {
        "file_events_per_s>=100000": f["events_per_s"] >= 100_000,
        "file_ack_p99_ms<50": f["ack_p99_ms"] < 50,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
