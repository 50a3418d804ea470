"""Stream processing against a naive baseline: throughput, freshness, memory.

    python -m benchmarks.bench_stream [--only throughput,freshness,memory] [--events 300000]
        [--freshness-seconds 10] [--rate 20000] [--visitors 1000000] [--events-per-visitor 2]
        [--out FILE]

Each section runs its consumers side by side with a dict-of-counters baseline (decode
each record, count per (location, device, item); no bot filtering), each consumer in
its own spawned process so peaks and caches do not mix. JSON on stdout.

``throughput``: ``StoreSimulator`` (seed 1, its default bots and one 100x
``SpamBurst``) makes the events; they are normalised, encoded and appended to a real
file log (``open_log``, fsync off) in a temp dir, with the catalog on its own topic.
Three consumers read the same log from offset 0: ``baseline``, ``stream``
(``StreamProcessor`` without a bot filter) and ``stream_bots`` (with
``default_bot_filter_factory``). Rates are events per CPU second of the consumer
(``time.process_time`` around the poll/apply loop, ``run_once(2000)``), so other load
skews them less than wall-clock rates. Snapshots off. Memory: peak RSS, RSS before the
loop, growth per 1k distinct visitors; the processors also report their top-10
trending items and whether a spammed item is among them.

``freshness``: in one process, a writer thread appends the same simulated events to a
file log at a steady ``--rate`` (20k/s) in 5 ms batches for ``--freshness-seconds``,
stamping ``received_ms`` with the wall clock as it appends (``_stream_load``); a consumer
thread tails the log meanwhile: ``StreamProcessor.run`` with bot filtering, or the
baseline. Freshness is the time from ``received_ms`` to the end of the batch that
applied the event, measured the same way for both (the processor's
``FreshnessTracker``). Default settings otherwise: fsync on, catalog grace 200 ms,
snapshots every 5 s. After the writer stops the consumer drains what is left; that is
counted too.

``memory``: ``--visitors`` distinct visitors (cookie, session, IP; 3 in 10 signed in),
``--events-per-visitor`` (2) events each, arriving over one hour of event time (the
visitor horizon) over a 20k-item catalog (``_stream_load.VisitorLoad``), written to a
log; the baseline and ``StreamProcessor`` with bot filtering then read it with the
default ``[stream]`` and ``[bots]`` bounds and snapshot schedule. Reported per million
visitors: peak RSS growth (``ru_maxrss`` less RSS before the loop; for the processor it
includes encoding snapshots) and held growth (RSS after the loop, state still alive);
the state's table sizes (``stats()``) and which bounds the load exceeds.
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
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import msgspec

from benchmarks._cli import add_only_option
from benchmarks._stream_load import (
    SteadyWriter,
    VisitorLoad,
    wall_ms,
    write_catalog,
    write_visitor_log,
)
from hotshelf.config import Config, EventsConfig, load_config
from hotshelf.events import StoredEvent, decode_stored_event, encode_stored_event, normalize
from hotshelf.log import EventLog, open_log
from hotshelf.simulation import Label, SimConfig, SimEvent, SpamBurst, StoreSimulator
from hotshelf.stream import FreshnessSummary, StreamProcessor, default_bot_filter_factory

# The processor's own tracker, so that the baseline's freshness is measured the same way.
from hotshelf.stream._freshness import FreshnessTracker

SECTIONS = ("throughput", "freshness", "memory")
BATCH = 2000
LIVE_BATCH = 1000  # what StreamProcessor.run applies per run_once
BASELINE = "baseline"
VARIANTS = (BASELINE, "stream", "stream_bots")
TARGET_EVENTS_PER_CPU_S = 100_000  # from the issue: per core, with bot filtering
TARGET_P99_MS = 1000  # freshness at a steady 20k events/s, with bot filtering
FRESHNESS_SAMPLES = 1_000_000  # keep every sample of a run for the percentiles
DRAIN_TIMEOUT_S = 60.0
TICK_S = 0.005  # the steady writer appends a batch this often
MEMORY_ITEMS = 20_000


def sim_config() -> SimConfig:
    return SimConfig(seed=1, spam_bursts=(SpamBurst(at_s=120.0, multiplier=100.0),))


def bench_config(data_dir: str | Path, *, snapshots: bool = False) -> Config:
    """Defaults with the log in ``data_dir``: no fsync, no retention, no catalog grace,
    and no periodic snapshots unless ``snapshots``."""
    overrides = {
        "data_dir": json.dumps(str(data_dir)),
        "log.fsync": "false",
        "log.retention_hours": "null",
        "stream.catalog_grace_ms": "0",
    }
    if not snapshots:
        overrides["stream.snapshot_interval_s"] = "1e9"
        overrides["stream.snapshot_every_records"] = str(10**12)
    return load_config(overrides=[f"{k}={v}" for k, v in overrides.items()], environ={})


def live_config(data_dir: str | Path) -> Config:
    """Defaults with the log in ``data_dir``; every freshness sample kept."""
    overrides = [f"data_dir={json.dumps(str(data_dir))}"]
    overrides.append(f"stream.freshness_samples={FRESHNESS_SAMPLES}")
    return load_config(overrides=overrides, environ={})


def _in_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh spawned process, so peak RSS and caches do not mix."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(fn, args)
    return result


def _rss_mb() -> float:
    """Peak resident set size so far."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rss_now_mb() -> float:
    """Resident set size now (Linux; elsewhere the peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return _rss_mb()
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return round(a / b, digits) if a is not None and b else None


# -- throughput ---------------------------------------------------------------------


def _visitor(cookie: str | None, user: str | None, session: str | None) -> str | None:
    return cookie or user or session


def _stored_chunks(
    sim: StoreSimulator, n: int, cfg: EventsConfig
) -> Iterator[tuple[list[SimEvent], list[StoredEvent]]]:
    """``n`` simulated events in chunks, with their stored records (received as it
    happens: at the chunk's last event time)."""
    stream = sim.events(n)
    while chunk := list(itertools.islice(stream, BATCH)):
        yield chunk, normalize([s.event for s in chunk], chunk[-1].ts_ms, cfg)


def write_log(cfg: Config, n: int) -> dict[str, Any]:
    """Simulate ``n`` events into the events topic (catalog first); what was written."""
    sim = StoreSimulator(sim_config())
    items = sim.catalog()
    write_catalog(cfg, items, sim.config.start_ms - 1)
    visitors: set[str | None] = set()
    labels: dict[str, int] = dict.fromkeys(Label, 0)
    size = written = 0
    with open_log(cfg, "events") as log:
        for chunk, stored in _stored_chunks(sim, n, cfg.events):
            for sim_event in chunk:
                labels[sim_event.label] += 1
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
    return n, cpu, {"counters": len(counts), "rss_after_mb": _rss_now_mb()}


def _processor(cfg: Config, own: Config, bots: bool) -> tuple[int, float, dict[str, Any]]:
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
            rss_after = _rss_now_mb()
        finally:
            processor.close(snapshot=False)
    extra = {
        "records_applied": n,
        "top10_trending": top,
        "bot_events": bot_events,
        "state": stats,
        "rss_after_mb": rss_after,
    }
    return events_applied, cpu, extra


def consume(variant: str, data_dir: str, snapshots: bool = False) -> dict[str, Any]:
    """Run one consumer over the log in ``data_dir`` (in a fresh process): its figures."""
    cfg = bench_config(data_dir)
    before = _rss_now_mb()
    if variant == BASELINE:
        n, cpu, extra = _baseline(cfg)
    else:
        # Each processor keeps its snapshots in a directory of its own over the shared log.
        own = bench_config(Path(data_dir) / variant, snapshots=snapshots)
        n, cpu, extra = _processor(cfg, own, variant == "stream_bots")
    return {
        "events": n,
        "cpu_s": round(cpu, 3),
        "events_per_cpu_s": round(n / cpu) if cpu else None,
        "us_per_event": round(cpu / n * 1e6, 3) if n else None,
        "rss_before_mb": before,
        "peak_rss_mb": _rss_mb(),
        **extra,
    }


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
            row["speed_vs_baseline"] = _ratio(row["events_per_cpu_s"], base["events_per_cpu_s"])
            row["us_per_event_vs_baseline"] = _ratio(row["us_per_event"], base["us_per_event"], 2)
            row["spammed_in_top10"] = sorted(spammed.intersection(row["top10_trending"]))


def _compiled() -> bool:
    """Whether the stream's hot path runs as built by mypyc (``setup.py``)."""
    from hotshelf.stream import _state

    return not str(_state.__file__).endswith(".py")


def throughput(n: int) -> dict[str, Any]:
    """Section ``throughput``: every variant over the same simulated log."""
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-stream-") as d:
        start = time.perf_counter()
        written = write_log(bench_config(d), n)
        write_s = time.perf_counter() - start
        results = {variant: _in_process(consume, variant, d) for variant in VARIANTS}
    _finish(results, written)
    rate = results["stream_bots"]["events_per_cpu_s"]
    return {
        "params": {
            "events": n,
            "batch": BATCH,
            "sim": "seed=1, default bots, SpamBurst(at_s=120, multiplier=100)",
            "write_log_s": round(write_s, 1),
            "compiled_hot_path": _compiled(),
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


# -- freshness ----------------------------------------------------------------------


class LiveConsumer(Protocol):
    """What the freshness run needs of a consumer (``StreamProcessor`` has it all)."""

    def run(self, stop: threading.Event, max_records: int = ...) -> None: ...

    def lag(self) -> dict[str, int]: ...

    def freshness_summary(self) -> FreshnessSummary: ...

    def close(self) -> None: ...


class CounterTail:
    """The baseline, live: tails the events topic into a dict of counters."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._consumer = log.consumer("bench-baseline")
        self.counts: dict[tuple[str | None, str | None, str | None], int] = {}
        self.next_offset = 0
        self.freshness = FreshnessTracker(FRESHNESS_SAMPLES)

    def run(self, stop: threading.Event, max_records: int = LIVE_BATCH) -> None:
        while not stop.is_set():
            self.run_once(max_records, timeout_s=0.1)

    def run_once(self, max_records: int, timeout_s: float) -> int:
        records = self._consumer.poll(max_records, timeout_s)
        counts = self.counts
        received = []
        for record in records:
            e = decode_stored_event(record.value)
            key = (e.location, e.device, e.item_id)
            counts[key] = counts.get(key, 0) + 1
            received.append(e.received_ms)
        if records:
            self.next_offset = records[-1].offset + 1
            self.freshness.observe(wall_ms(), received)
        return len(records)

    def lag(self) -> dict[str, int]:
        return {"events": max(0, self._log.end_offset - self.next_offset)}

    def freshness_summary(self) -> FreshnessSummary:
        return self.freshness.summary()

    def close(self) -> None:
        self._consumer.close()


def _thread_cpu(fn: Callable[..., None], *args: Any) -> float:
    """Run ``fn``; the CPU seconds this thread spent on it."""
    start = time.thread_time()
    fn(*args)
    return time.thread_time() - start


def _drain(consumer: LiveConsumer, consuming: Future[float]) -> float:
    """Wait for ``consumer`` to apply everything written; seconds waited."""
    start = time.monotonic()
    while consumer.lag()["events"] and not consuming.done():
        if time.monotonic() - start > DRAIN_TIMEOUT_S:
            break
        time.sleep(0.01)
    return time.monotonic() - start


def _steady(consumer: LiveConsumer, writer: SteadyWriter) -> dict[str, Any]:
    """The writer and the consumer in threads of their own until all is applied."""
    stop = threading.Event()
    with ThreadPoolExecutor(2, thread_name_prefix="bench-live") as pool:
        consuming = pool.submit(_thread_cpu, consumer.run, stop)
        try:
            pool.submit(writer.run).result()
            drain_s = _drain(consumer, consuming)
        finally:
            stop.set()
        cpu_s = consuming.result()
    wall_s = writer.elapsed_s + drain_s
    return {
        "drain_s": round(drain_s, 3),
        "lag_left": consumer.lag()["events"],
        "consumer_cpu_s": round(cpu_s, 2),
        "consumer_cpu_share": round(cpu_s / wall_s, 3) if wall_s else None,
    }


def _live_consumer(variant: str, cfg: Config, log: EventLog, catalog: EventLog) -> LiveConsumer:
    if variant == BASELINE:
        return CounterTail(log)
    return StreamProcessor(cfg, log, catalog, default_bot_filter_factory(cfg))


def _freshness_row(summary: FreshnessSummary) -> dict[str, Any]:
    buckets = {f"le_{b:g}_ms": n for b, n in summary.buckets}
    return {
        "applied": summary.count,
        "p50_ms": summary.p50_ms,
        "p90_ms": summary.p90_ms,
        "p99_ms": summary.p99_ms,
        "max_ms": summary.max_ms,
        "mean_ms": round(summary.sum_ms / summary.count, 1) if summary.count else None,
        "histogram_cumulative": buckets,
    }


def live(variant: str, seconds: float, rate: float) -> dict[str, Any]:
    """Section ``freshness``, one variant (in a fresh process): a steady writer and a
    consumer over one file log."""
    sim = StoreSimulator(sim_config())
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-live-") as d:
        cfg = live_config(d)
        chunks = _stored_chunks(sim, round(seconds * rate), cfg.events)
        events = [e for _, stored in chunks for e in stored]
        write_catalog(cfg, sim.catalog(), wall_ms())
        with open_log(cfg, "events") as log, open_log(cfg, "catalog") as catalog:
            consumer = _live_consumer(variant, cfg, log, catalog)
            writer = SteadyWriter(log, events, rate, TICK_S)
            try:
                timing = _steady(consumer, writer)
                summary = consumer.freshness_summary()
            finally:
                consumer.close()
    return {"freshness": _freshness_row(summary), "writer": writer.report(), **timing}


def freshness(seconds: float, rate: float) -> dict[str, Any]:
    """Section ``freshness``: the baseline and the processor with bots at a steady rate."""
    results = {v: _in_process(live, v, seconds, rate) for v in (BASELINE, "stream_bots")}
    base, stream = results[BASELINE]["freshness"], results["stream_bots"]["freshness"]
    # Baseline freshness is a few ms, near the 1 ms resolution: a difference says more.
    stream["added_vs_baseline_ms"] = {
        k: stream[k] - base[k] for k in ("p50_ms", "p99_ms", "max_ms")
    }
    defaults = live_config(".")
    return {
        "params": {
            "seconds": seconds,
            "rate": rate,
            "tick_ms": TICK_S * 1000,
            "sim": "seed=1, default bots, SpamBurst(at_s=120, multiplier=100)",
            "fsync": defaults.log.fsync,
            "catalog_grace_ms": defaults.stream.catalog_grace_ms,
            "snapshot_interval_s": defaults.stream.snapshot_interval_s,
            "consumer_max_records": LIVE_BATCH,
        },
        "variants": results,
        "target": {
            "what": f"p99 freshness (received_ms to applied) at {rate:g} events/s, with bots",
            "p99_ms": TARGET_P99_MS,
            "measured": stream["p99_ms"],
            "met": stream["p99_ms"] < TARGET_P99_MS,
        },
    }


# -- memory -------------------------------------------------------------------------


def _bounds(stats: dict[str, int], offered: dict[str, int], cfg: Config) -> dict[str, Any]:
    """Each bounded table: its size, its bound, how many keys the load offers it."""
    s, pairs, items = cfg.stream, offered["visitor_item_pairs"], offered["items"]
    rows = {
        "visitor_pairs": (stats["visitor_pairs"], s.max_visitor_pairs, pairs),
        "ip_pairs": (stats["ip_pairs"], s.max_visitor_pairs, pairs),  # one IP per visitor
        "sessions": (stats["sessions"], s.max_sessions, offered["sessions"]),
        "users": (stats["users"], s.max_users, offered["users"]),
        "spike_items": (stats["spike_items"], s.max_spike_items, items),
        "related_items": (stats["related_items"], s.max_related_items, items),
        # per key kind (cookie, IP, session); the filter does not report its sizes
        "bot_filter_tracked": (None, cfg.bots.max_tracked, offered["visitors"]),
    }
    return {
        name: {"size": size, "bound": bound, "offered": n, "hit": n > bound}
        for name, (size, bound, n) in rows.items()
    }


def memory(visitors: int, per_visitor: int) -> dict[str, Any]:
    """Section ``memory``: peak RSS growth per million active visitors."""
    load = VisitorLoad(visitors=visitors, per_visitor=per_visitor)
    items = StoreSimulator(SimConfig(seed=1, n_items=MEMORY_ITEMS)).catalog()
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-memory-") as d:
        start = time.perf_counter()
        offered = write_visitor_log(bench_config(d), load, items)
        write_s = time.perf_counter() - start
        results = {v: _in_process(consume, v, d, True) for v in (BASELINE, "stream_bots")}
    millions = visitors / 1e6
    for row in results.values():
        peak = row["peak_rss_mb"] - row["rss_before_mb"]
        held = row["rss_after_mb"] - row["rss_before_mb"]
        row["peak_growth_mb_per_1m_visitors"] = round(peak / millions, 1)
        row["held_growth_mb_per_1m_visitors"] = round(held / millions, 1)
    stream, base = results["stream_bots"], results[BASELINE]
    for key in ("peak_growth_mb_per_1m_visitors", "held_growth_mb_per_1m_visitors"):
        stream[key.replace("_per_1m_visitors", "_vs_baseline")] = _ratio(stream[key], base[key], 1)
    stream["speed_vs_baseline"] = _ratio(stream["events_per_cpu_s"], base["events_per_cpu_s"])
    stream["bounds"] = _bounds(stream["state"], offered, bench_config(d))
    return {
        "params": {**msgspec.structs.asdict(load), "write_log_s": round(write_s, 1)},
        "log": offered,
        "variants": results,
    }


# -- running ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "stream",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        },
        "sections": list(args.only),
    }
    if "throughput" in args.only:
        out["throughput"] = throughput(args.events)
    if "freshness" in args.only:
        out["freshness"] = freshness(args.freshness_seconds, args.rate)
    if "memory" in args.only:
        out["memory"] = memory(args.visitors, args.events_per_visitor)
    out["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_only_option(parser, SECTIONS)
    parser.add_argument("--events", type=int, default=300_000, help="throughput: events")
    parser.add_argument("--freshness-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20_000.0, help="freshness: events/s")
    parser.add_argument("--visitors", type=int, default=1_000_000, help="memory: visitors")
    parser.add_argument("--events-per-visitor", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = json.dumps(run(args), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
