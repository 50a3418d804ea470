"""Durable ingest throughput: HTTP on both log backends side by side, plus raw appends,
and what running the stream processor inside the server costs ingest.

    python -m benchmarks.bench_ingest [--duration 10] [--concurrency 16] [--out FILE]
        [--stream on|off|both] [--repeats 1]

For each backend (embedded file log, Redis Streams) a real ``hotshelf serve`` process
is started on loopback and a load generator in a second process posts NDJSON batches
of 100 events (fresh event ids every request) for a bounded time. Reported: durable
events/s acknowledged, p50/p99 acknowledgement latency, server CPU per event; then raw
log append throughput in-process (the same events normalised and encoded as the
server stores them, batches of 100, 1 thread and 32 asyncio appenders; more shapes in
``bench_log``). Results are JSON on stdout; ratios compare the backends.

The stream processor runs in a thread of the server and shares its GIL. ``--stream both``
(the default) loads the file-backend server with it off (``stream.serve=false``) and on,
alternating ``--repeats`` times, and reports medians side by side (``stream_cost``): events/s,
ack p50/p99 and server CPU per event, plus, with it on, how far behind it was when the
load stopped, the freshness it reported and how long it took to catch up. The Redis
run and the ``http.file`` figures use the processor on unless ``--stream off``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._loadgen import PLACEHOLDER, LoadSpec, medians
from benchmarks._servers import hotshelf_serve_command, measure, private_redis, running_server
from benchmarks.bench_log import (
    ASYNC_32,
    SYNC_1,
    append_rates,
    file_config,
    make_records,
    redis_config,
)
from hotshelf.config import Config
from hotshelf.log import open_log
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.testing import free_port

BATCH = 100
COMPARED = ("events_per_s", "ack_p50_ms", "ack_p99_ms", "server_cpu_us_per_event")
CATCH_UP_TIMEOUT_S = 120.0


def make_bodies(n_bodies: int, seed: int = 7) -> tuple[list[bytes], list[list[bytes]]]:
    """NDJSON bodies of BATCH simulated events with placeholder ids, and the same
    events as the log stores them (normalised and encoded), in batches of BATCH."""
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
    records = make_records(events[: 100 * BATCH])
    return bodies, [records[i : i + BATCH] for i in range(0, len(records), BATCH)]


def bench_http(
    backend: str,
    overrides: list[str],
    bodies: list[bytes],
    args: argparse.Namespace,
    *,
    stream: bool = True,
) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"hotshelf-bench-{backend}-") as data_dir:
        sets = [f'log.backend="{backend}"', *overrides]
        cmd = hotshelf_serve_command(port, data_dir, sets, stream=stream)
        with running_server(cmd, port) as server:
            spec = LoadSpec(port, bodies, concurrency=args.concurrency, duration_s=args.duration)
            summary = measure(server, spec, BATCH)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            if stream:
                summary["stream"] = stream_after_load(port, metrics)
    summary["fsync_batches"] = _metric_sum(metrics, "hotshelf_log_sync_batches_count")
    return summary


def stream_after_load(port: int, metrics: str) -> dict[str, Any]:
    """The processor when the load stopped (lag, freshness), then the time to catch up."""
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    rt = (("lane", "rt"),)
    count = values.get(("hotshelf_stream_freshness_seconds_count", rt), 0.0)
    total = values.get(("hotshelf_stream_freshness_seconds_sum", rt), 0.0)
    p99 = values.get(("hotshelf_stream_freshness_recent_seconds", (*rt, ("quantile", "0.99"))))
    return {
        "lag_at_end": int(values.get(("hotshelf_stream_lag_records", (("topic", "events"),)), 0)),
        "freshness_mean_ms": round(total / count * 1000, 1) if count else None,
        "freshness_recent_p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "catch_up_s": catch_up_seconds(port),
    }


def catch_up_seconds(port: int) -> float | None:
    """Seconds until ``/readyz`` reports no stream lag (None past the timeout)."""
    started = time.perf_counter()
    while time.perf_counter() - started < CATCH_UP_TIMEOUT_S:
        lag = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json().get("stream_lag")
        if lag is not None and not any(lag.values()):
            return round(time.perf_counter() - started, 2)
        time.sleep(0.05)
    return None


def bench_stream_cost(bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """The file backend with the processor off and on, alternating; medians side by side."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            runs[mode].append(bench_http("file", [], bodies, args, stream=mode == "on"))
    off, on = medians(runs["off"], COMPARED), medians(runs["on"], COMPARED)
    side_by_side: dict[str, Any] = {
        key: {
            "off": off.get(key),
            "on": on.get(key),
            "on_over_off": round(on[key] / off[key], 2) if off.get(key) and key in on else None,
        }
        for key in COMPARED
    }
    side_by_side["stream_on"] = [run["stream"] for run in runs["on"]]
    return {"side_by_side": side_by_side, "runs": runs}


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def bench_raw(cfg: Config, batches: list[list[bytes]], seconds: float) -> dict[str, Any]:
    """Appends of the same records straight to the log (see bench_log for more shapes)."""
    with open_log(cfg, "events") as log:
        rates = append_rates(log, batches, seconds, (SYNC_1, ASYNC_32))
    return {f"{k}_records_per_s": v["records_per_s"] for k, v in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--stream",
        choices=("on", "off", "both"),
        default="both",
        help="run the stream processor in the server: on, off, or both side by side",
    )
    parser.add_argument("--repeats", type=int, default=1, help="off/on pairs for --stream both")
    args = parser.parse_args()

    bodies, batches = make_bodies(400)
    results: dict[str, Any] = {
        "benchmark": "ingest",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {
            "batch": BATCH,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "stream": args.stream,
        },
        "http": {},
        "raw_append": {},
    }
    stream = args.stream != "off"
    if args.stream == "both":
        cost = bench_stream_cost(bodies, args)
        results["stream_cost"] = {"file": cost["side_by_side"]}
        results["http"]["file"] = cost["runs"]["on"][-1]
    else:
        results["http"]["file"] = bench_http("file", [], bodies, args, stream=stream)
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-raw-") as d:
        results["raw_append"]["file"] = bench_raw(file_config(d), batches, args.raw_seconds)
    with private_redis() as redis:
        if redis is None:
            results["http"]["redis"] = {"skipped": "no redis-server binary"}
        else:
            url_opt = f'log.redis_url="{redis.url}"'
            results["http"]["redis"] = bench_http("redis", [url_opt], bodies, args, stream=stream)
            cfg = redis_config(redis.url)
            results["raw_append"]["redis"] = bench_raw(cfg, batches, args.raw_seconds)
    f, r = results["http"]["file"], results["http"].get("redis", {})
    if r.get("events_per_s"):
        pairs = {
            "events_per_s": (f["events_per_s"], r["events_per_s"]),
            "ack_p99": (f["ack_p99_ms"], r["ack_p99_ms"]),
            "server_cpu_per_event": (f["server_cpu_us_per_event"], r["server_cpu_us_per_event"]),
            **{
                f"raw_{k}": (v, results["raw_append"]["redis"][k])
                for k, v in results["raw_append"]["file"].items()
            },
        }
        results["ratios"] = {
            f"file_over_redis_{k}": round(a / b, 2) for k, (a, b) in pairs.items() if a and b
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
