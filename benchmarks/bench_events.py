"""Per-event CPU cost of the ingest path, stage by stage, without HTTP or the log.

    python -m benchmarks.bench_events [--batch 100] [--seconds 1.0]

Stages: decode (+ semantic checks) of an NDJSON body, normalize, dedup filter/confirm,
msgpack encode, and all of them together. Prints JSON: microseconds per event for
each stage and events/s for the whole pipeline on one core. The slow path (a body
with one bad field, reported field by field) is measured too, for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hotshelf.config import EventsConfig, ServerConfig
from hotshelf.errors import ValidationError
from hotshelf.events import (
    DedupWindow,
    decode_events,
    encode_stored_event,
    normalize,
)

NDJSON = "application/x-ndjson"


def make_body(batch: int, seed: int = 1, *, bad: bool = False) -> bytes:
    """A realistic NDJSON body: mixed event types, ids, IPs, a few properties."""
    rng = random.Random(seed)
    now = time.time()
    lines = []
    for i in range(batch):
        kind = rng.choice(["view", "view", "view", "click", "add_to_cart", "impression", "search"])
        event: dict[str, Any] = {
            "type": kind,
            "event_id": f"{seed:08x}-{i:06d}-{rng.getrandbits(48):012x}",
            "timestamp": now - rng.random() * 60,
            "user_id": f"u{rng.randrange(100_000)}",
            "cookie_id": f"c{rng.getrandbits(64):016x}",
            "session_id": f"s{rng.getrandbits(40):010x}",
            "device": rng.choice(["mobile", "desktop"]),
            "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        }
        if kind == "impression":
            event["item_ids"] = [f"i{rng.randrange(50_000)}" for _ in range(10)]
        elif kind == "search":
            event["query"] = rng.choice(["red shoes", "kettle", "usb c cable"])
        else:
            event["item_id"] = f"i{rng.randrange(50_000)}"
        if rng.random() < 0.3:
            event["properties"] = {"position": rng.randrange(20), "list": "home"}
        lines.append(msgspec.json.encode(event))
    if bad:
        lines[-1] = lines[-1].replace(b'"type"', b'"timestamp":true,"type"', 1)
    return b"\n".join(lines)


def per_event_us(fn: Callable[[], object], events: int, seconds: float) -> float:
    fn()  # warm caches
    runs = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / (runs * events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    cfg, server = EventsConfig(), ServerConfig()
    # Distinct bodies so the dedup window sees fresh ids; it is emptied when they wrap.
    bodies = [make_body(args.batch, seed) for seed in range(1, 201)]
    body = bodies[0]
    bad_body = make_body(args.batch, bad=True)
    events = decode_events(body, NDJSON, cfg, server)
    now_ms = time.time_ns() // 1_000_000
    stored = normalize(events, now_ms, cfg)
    batches = [normalize(decode_events(b, NDJSON, cfg, server), now_ms, cfg) for b in bodies]
    state = {"n": 0, "window": DedupWindow(3600, 2_000_000)}

    def next_window() -> tuple[int, DedupWindow]:
        k = state["n"] % len(bodies)
        state["n"] += 1
        if k == 0:
            state["window"] = DedupWindow(3600, 2_000_000)
        return k, state["window"]  # type: ignore[return-value]

    def dedup() -> None:
        k, window = next_window()
        fresh, _ = window.filter(batches[k], now_ms=now_ms)
        window.confirm(fresh, now_ms=now_ms)

    def pipeline() -> None:
        k, window = next_window()
        recs = normalize(decode_events(bodies[k], NDJSON, cfg, server), now_ms, cfg)
        fresh, _ = window.filter(recs, now_ms=now_ms)
        values = [encode_stored_event(r) for r in fresh]
        window.confirm(fresh, now_ms=now_ms)
        assert len(values) == len(recs)

    def slow() -> None:
        with contextlib.suppress(ValidationError):
            decode_events(bad_body, NDJSON, cfg, server)

    n, s = args.batch, args.seconds
    stages = {
        "decode_validate_us": per_event_us(lambda: decode_events(body, NDJSON, cfg, server), n, s),
        "normalize_us": per_event_us(lambda: normalize(events, now_ms, cfg), n, s),
        "dedup_filter_confirm_us": per_event_us(dedup, n, s),
        "encode_us": per_event_us(lambda: [encode_stored_event(r) for r in stored], n, s),
        "pipeline_us": per_event_us(pipeline, n, s),
        "slow_path_reject_us": per_event_us(slow, n, s),
    }
    result: dict[str, Any] = {
        "benchmark": "events",
        "batch": n,
        "body_bytes": len(body),
        **{k: round(v, 3) for k, v in stages.items()},
        "pipeline_events_per_s_one_core": round(1e6 / stages["pipeline_us"]),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
