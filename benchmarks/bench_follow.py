"""Following a live file log from another process, next to a consumer in the writer's.

    python -m benchmarks.bench_follow [--rate 200] [--batch 5] [--seconds 5] [--out FILE]

The writer (this process, the file log with fsync on, as a server runs it) appends
``--batch`` real stored events ``--rate`` times a second for ``--seconds``; each record
starts with the monotonic time its append was submitted (CLOCK_MONOTONIC is one clock
for every process on Linux). Three readers measure, for every record, submit ->
readable:

* ``ack``: the writer's own append returning (the durability floor);
* ``in_process_consumer``: a ``FileLog`` consumer in the writer's process, woken by the
  writer thread's condition variable (how the server's stream processor reads);
* ``follower``: a ``LogFollower`` consumer in another process, which polls the tail
  marker every 2 ms (how a process beside the server reads).

p50/p99 in ms, the follower's over the in-process consumer's, and the follower
process's CPU per second while it follows. Then the whole log read back from offset
0, by ``FileLog.read`` and by ``LogFollower.read`` (records/s, ratio). JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._cli import run_and_report, run_header
from benchmarks._loadgen import percentile
from benchmarks.bench_log import make_batches
from hotshelf.config import LogConfig
from hotshelf.log import EventLog, FileLog, LogFollower

_STAMP = struct.Struct("<q")
GROUP = "bench"


def _stats(latencies_ns: list[int]) -> dict[str, float]:
    ms = sorted(x / 1e6 for x in latencies_ns)
    return {
        "records": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else 0.0,
    }


def _consume(log: EventLog, expected: int, deadline: float) -> list[int]:
    """Submit -> readable for every record, until ``expected`` records or ``deadline``."""
    consumer = log.consumer(GROUP)
    out: list[int] = []
    while len(out) < expected and time.monotonic() < deadline:
        records = consumer.poll(max_records=1000, timeout_s=0.2)
        now = time.monotonic_ns()
        out += [now - _STAMP.unpack_from(r.value)[0] for r in records]
    consumer.close()
    return out


def _child(directory: str, expected: int, seconds: float) -> None:
    """The follower process: prints its latencies and CPU seconds as JSON."""
    with LogFollower(Path(directory), LogConfig()) as follower:
        print("ready", flush=True)
        started, cpu0 = time.monotonic(), time.process_time()
        latencies = _consume(follower, expected, time.monotonic() + seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - started
    json.dump({"latencies_ns": latencies, "cpu_s": cpu, "wall_s": wall}, sys.stdout)


def _read_rate(log: EventLog) -> float:
    """Records/s reading the whole log from its start, 1,000 at a time."""
    started = time.perf_counter()
    offset, n = log.start_offset, 0
    end = log.end_offset
    while offset < end:
        records = log.read(offset, 1000)
        n += len(records)
        offset = records[-1].offset + 1
    return n / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    result = run_header(args)
    batches = [b[: args.batch] for b in make_batches(50, max(args.batch, 1))]
    total = int(args.rate * args.seconds) * args.batch
    ack: list[int] = []
    with tempfile.TemporaryDirectory(prefix="hotshelf-follow-") as tmp:
        directory = Path(tmp)
        writer = FileLog(directory, LogConfig())
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_follow", "--child", tmp,
             "--expected", str(total), "--seconds", str(args.seconds + 30)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        local: list[int] = []
        reader = threading.Thread(
            target=lambda: local.extend(
                _consume(writer, total, time.monotonic() + args.seconds + 30)
            )
        )
        reader.start()
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        for n in range(int(args.rate * args.seconds)):
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            submitted = time.monotonic_ns()
            stamp = _STAMP.pack(submitted)
            writer.append([stamp + value for value in batches[n % len(batches)]])
            ack.append(time.monotonic_ns() - submitted)
        reader.join()
        out, _ = child.communicate(timeout=60)
        followed = json.loads(out)
        reads = {"file_log_records_per_s": round(_read_rate(writer))}
        with LogFollower(directory, LogConfig()) as follower:
            reads["follower_records_per_s"] = round(_read_rate(follower))
        writer.close()
    result["appended_records"] = total
    result["ack"] = _stats(ack)  # one number per batch
    result["in_process_consumer"] = _stats(local)
    result["follower"] = _stats(followed["latencies_ns"])
    result["follower"]["cpu_s_per_s"] = round(followed["cpu_s"] / followed["wall_s"], 4)
    base = result["in_process_consumer"]
    result["follower_over_in_process"] = {
        key: round(result["follower"][key] / base[key], 2) if base[key] else None
        for key in ("p50_ms", "p99_ms")
    }
    reads["ratio_follower_vs_file_log"] = round(
        reads["follower_records_per_s"] / reads["file_log_records_per_s"], 3
    )
    result["read_back"] = reads
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="appends per second")
    parser.add_argument("--batch", type=int, default=5, help="records per append")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.expected, args.seconds)
        return
    run_and_report(run, args)


if __name__ == "__main__":
    main()
