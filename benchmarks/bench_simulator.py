"""How fast the store simulator makes events, against a bare baseline.

    python -m benchmarks.bench_simulator [--events 500000] [--rate 500]

Measures building the store, generating events (``StoreSimulator.events``), and
generating plus NDJSON encoding (what ``hotshelf simulate --out`` does). The baseline
constructs the same number of ``Event`` structs with fixed fields in a tight loop:
the ratio says what the behaviour model costs on top of the data model. Rates are
per CPU second of this process (``time.process_time``), so other load on the machine
skews them less than wall-clock rates. Prints JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import time

from hotshelf.cli._simulate import encode_event
from hotshelf.events import Event, EventType
from hotshelf.simulation import SimConfig, StoreSimulator


def _baseline(n: int) -> float:
    start = time.process_time()
    for i in range(n):
        Event(
            type=EventType.VIEW, event_id=f"b-{i:09d}", timestamp=1.7e9 + i / 1000,
            cookie_id="c0", user_id=None, session_id="s0", item_id="sku-000001",
            location="London, GB", device="mobile", user_agent="Mozilla/5.0", ip="81.2.3.4",
        )  # fmt: skip
    return n / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rate", type=float, default=500.0, help="simulated events/s")
    args = parser.parse_args()
    started = time.process_time()
    sim = StoreSimulator(SimConfig(seed=1, events_per_s=args.rate))
    build_s = time.process_time() - started

    started = time.process_time()
    labels = collections.Counter(s.label.value for s in sim.events(args.events))
    generate = args.events / (time.process_time() - started)

    started = time.process_time()
    size = sum(len(encode_event(s.event)) for s in sim.events(args.events))
    with_ndjson = args.events / (time.process_time() - started)

    baseline = _baseline(args.events)
    result = {
        "benchmark": "simulator",
        "python": platform.python_version(),
        "events": args.events,
        "build_cpu_s": round(build_s, 3),
        "generate_events_per_cpu_s": round(generate),
        "generate_ndjson_events_per_cpu_s": round(with_ndjson),
        "ndjson_bytes_per_event": round(size / args.events, 1),
        "baseline_event_structs_per_cpu_s": round(baseline),
        "generate_vs_baseline": round(generate / baseline, 3),
        "labels": dict(labels),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
