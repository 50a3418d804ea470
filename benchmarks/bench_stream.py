"""Stream processing throughput and memory: a naive consumer against ``StreamProcessor``.

    python -m benchmarks.bench_stream [--events 300000] [--out FILE]

``StoreSimulator`` (seed 1, its default bots and one 100x ``SpamBurst``) makes the
events; they are normalised, encoded and appended to a real file log (``open_log``,
fsync off) in a temp dir, with the catalog on its own topic. Three consumers then
read the same log from offset 0, each in its own spawned process so peak RSS
(``ru_maxrss``) does not mix:

- ``baseline``: decode each record, count per (location, device, item) in a dict;
  no bot filtering;
- ``stream``: ``StreamProcessor`` without a bot filter;
- ``stream_bots``: ``StreamProcessor`` with ``default_bot_filter_factory``.

Rates are events per CPU second of the consumer (``time.process_time`` around the
poll/apply loop, ``run_once(2000)`` for the processor), so other load skews them
less than wall-clock rates; ratios are against the baseline. Periodic snapshots are
switched off: this measures applying events. Memory is the consumer's peak RSS, its
RSS before the loop, and the growth per 1k distinct visitors (cookie, else user,
else session). The processors also report their top-10 trending items (global,
shortest window) and whether any spammed item is among them. JSON on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from hotshelf.config import Config, load_config
from hotshelf.events import (
    CatalogChange,
    CatalogOp,
    decode_stored_event,
    encode_catalog_change,
    encode_stored_event,
    normalize,
)
from hotshelf.log import open_log
from hotshelf.simulation import Label, SimConfig, SpamBurst, StoreSimulator
from hotshelf.stream import StreamProcessor, default_bot_filter_factory

BATCH = 2000
BASELINE = "baseline"
VARIANTS = (BASELINE, "stream", "stream_bots")
TARGET_EVENTS_PER_CPU_S = 100_000  # from the issue: per core, with bot filtering


def sim_config() -> SimConfig:
    return SimConfig(seed=1, spam_bursts=(SpamBurst(at_s=120.0, multiplier=100.0),))


def bench_config(data_dir: str | Path) -> Config:
    """Defaults with the log in ``data_dir``: no fsync, no retention, no periodic snapshots."""
    overrides = {
        "data_dir": json.dumps(str(data_dir)),
        "log.fsync": "false",
        "log.retention_hours": "null",
        "stream.snapshot_interval_s": "1e9",
        "stream.snapshot_every_records": str(10**12),
        "stream.catalog_grace_ms": "0",
    }
    return load_config(overrides=[f"{k}={v}" for k, v in overrides.items()], environ={})


def _visitor(cookie: str | None, user: str | None, session: str | None) -> str | None:
    return cookie or user or session


def write_log(cfg: Config, n: int) -> dict[str, Any]:
    """Simulate ``n`` events into the events topic (catalog first); what was written."""
    sim = StoreSimulator(sim_config())
    start_ms = sim.config.start_ms
    items = sim.catalog()
    with open_log(cfg, "catalog") as catalog:
        catalog.append(
            [
                encode_catalog_change(
                    CatalogChange(
                        op=CatalogOp.UPSERT, item_id=i.item_id, received_ms=start_ms - 1, item=i
                    )
                )
                for i in items
            ]
        )
    visitors: set[str | None] = set()
    labels: dict[str, int] = dict.fromkeys(Label, 0)
    size = written = 0
    stream = sim.events(n)
    with open_log(cfg, "events") as log:
        while chunk := list(itertools.islice(stream, BATCH)):
            for sim_event in chunk:
                labels[sim_event.label] += 1
            # Received as it happens: the arrival time is the chunk's last event time.
            stored = normalize([s.event for s in chunk], chunk[-1].ts_ms, cfg.events)
            visitors.update(_visitor(e.cookie_id, e.user_id, e.session_id) for e in stored)
            records = [encode_stored_event(e) for e in stored]
            size += sum(len(r) for r in records)
            written += len(records)
            log.append(records)
    visitors.discard(None)
    spammed = sorted({i for burst in sim.ground_truth.spam_bursts for i in burst.item_ids})
    return {
        "events": written,
        "catalog_items": len(items),
        "record_bytes": round(size / written) if written else 0,
        "visitors": len(visitors),
        "labels": {str(k): v for k, v in labels.items()},
        "spammed_items": spammed,
    }


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _baseline(cfg: Config) -> tuple[int, float, dict[str, Any]]:
    counts: dict[tuple[str | None, str | None, str | None], int] = {}
    with open_log(cfg, "events") as log:
        consumer = log.consumer("bench-baseline")
        try:
            n = 0
            start = time.process_time()
            while records := consumer.poll(BATCH):
                for record in records:
                    e = decode_stored_event(record.value)
                    key = (e.location, e.device, e.item_id)
                    counts[key] = counts.get(key, 0) + 1
                n += len(records)
            cpu = time.process_time() - start
        finally:
            consumer.close()
    return n, cpu, {"counters": len(counts)}


def _processor(cfg: Config, state_dir: Path, bots: bool) -> tuple[int, float, dict[str, Any]]:
    # Each processor keeps its snapshots in a directory of its own over the shared log.
    own = bench_config(state_dir)
    with open_log(cfg, "events") as events, open_log(cfg, "catalog") as catalog:
        factory = default_bot_filter_factory(own) if bots else None
        processor = StreamProcessor(own, events, catalog, factory, group="bench-stream")
        try:
            n = 0
            start = time.process_time()
            while not processor.caught_up():
                applied = processor.run_once(BATCH)
                if not applied:
                    raise RuntimeError("stream processor made no progress")
                n += applied
            cpu = time.process_time() - start
            # Rates count events; the catalog records (one per item) are applied too.
            events_applied = processor.offsets()["events"]
            with processor.reading() as state:
                top = [s.item_id for s in state.trending(k=10)]
                bot_events = sum(state.counts().bot_events.values())
                stats = state.stats()
        finally:
            processor.close(snapshot=False)
    extra = {"records_applied": n, "top10_trending": top, "bot_events": bot_events, "state": stats}
    return events_applied, cpu, extra


def consume(variant: str, data_dir: str) -> dict[str, Any]:
    """Run one consumer over the log in ``data_dir`` (in a fresh process): its figures."""
    cfg = bench_config(data_dir)
    before = _rss_mb()
    if variant == BASELINE:
        n, cpu, extra = _baseline(cfg)
    else:
        n, cpu, extra = _processor(cfg, Path(data_dir) / variant, variant == "stream_bots")
    return {
        "events": n,
        "cpu_s": round(cpu, 3),
        "events_per_cpu_s": round(n / cpu) if cpu else None,
        "us_per_event": round(cpu / n * 1e6, 3) if n else None,
        "rss_before_mb": before,
        "peak_rss_mb": _rss_mb(),
        **extra,
    }


def _in_process(variant: str, data_dir: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(consume, (variant, data_dir))
    return result


def _finish(results: dict[str, dict[str, Any]], written: dict[str, Any]) -> None:
    """Add ratios to the baseline, memory per 1k visitors and the spam check, in place."""
    base = results[BASELINE]
    per_k = written["visitors"] / 1000
    spammed = set(written["spammed_items"])
    for name, row in results.items():
        if per_k:
            row["peak_rss_mb_per_1k_visitors"] = round(row["peak_rss_mb"] / per_k, 3)
            growth = row["peak_rss_mb"] - row["rss_before_mb"]
            row["rss_growth_mb_per_1k_visitors"] = round(growth / per_k, 3)
        if name != BASELINE:
            row["speed_vs_baseline"] = round(row["events_per_cpu_s"] / base["events_per_cpu_s"], 3)
            row["us_per_event_vs_baseline"] = round(row["us_per_event"] / base["us_per_event"], 2)
            row["spammed_in_top10"] = sorted(spammed.intersection(row["top10_trending"]))


def run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-stream-") as d:
        start = time.perf_counter()
        written = write_log(bench_config(d), n)
        write_s = time.perf_counter() - start
        results = {variant: _in_process(variant, d) for variant in VARIANTS}
    _finish(results, written)
    rate = results["stream_bots"]["events_per_cpu_s"]
    return {
        "benchmark": "stream",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {
            "events": n,
            "batch": BATCH,
            "sim": "seed=1, default bots, SpamBurst(at_s=120, multiplier=100)",
            "write_log_s": round(write_s, 1),
        },
        "log": written,
        "variants": results,
        "target": {
            "what": "events/s per core (CPU second) with bot filtering (stream_bots)",
            "events_per_cpu_s": TARGET_EVENTS_PER_CPU_S,
            "measured": rate,
            "met": rate is not None and rate >= TARGET_EVENTS_PER_CPU_S,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = json.dumps(run(args.events), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
