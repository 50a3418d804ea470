"""A lean HTTP/1.1 load generator for loopback benchmarks.

httpx/aiohttp cost more CPU per request than the server under test, so this client
speaks just enough HTTP/1.1 over asyncio (keep-alive, Content-Length responses) to
measure the server rather than itself. ``benchmarks._servers.load_in_process`` runs
it in its own process so it gets its own core. Every run is bounded by its duration
and a request cap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PLACEHOLDER",
    "LoadResult",
    "LoadSpec",
    "OpenLoopSpec",
    "medians",
    "percentile",
    "run_closed_loop",
    "run_open_loop",
]

PLACEHOLDER = b"@@REQID@@@@@"  # 12 bytes, replaced by a unique hex id per request

# Next request number per process. The pid in the top bits keeps processes apart and
# the count carries on across runs, so no two requests of a benchmark (warm-up
# included) send the same event ids: the server's dedup window would drop them.
_next_request: dict[int, int] = {}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100.0 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def medians(runs: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    """Median of each ``key`` over repeated runs; keys not numeric in every run are left out."""
    out: dict[str, float] = {}
    for key in keys:
        values = [run.get(key) for run in runs]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if runs and len(numbers) == len(values):
            out[key] = round(statistics.median(numbers), 3)
    return out


@dataclass(frozen=True)
class LoadSpec:
    """What to send where: ``bodies`` round robin over ``concurrency`` connections."""

    port: int
    bodies: list[bytes]
    concurrency: int = 16
    duration_s: float = 5.0
    max_requests: int = 10_000_000
    path: str = "/v1/events"
    host: str = "127.0.0.1"
    content_type: str = "application/x-ndjson"

    def warm_up(self) -> LoadSpec:
        """A short, light run of the same requests."""
        return dataclasses.replace(
            self, bodies=self.bodies[-20:], concurrency=4, duration_s=0.5, max_requests=200
        )


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    status: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    unfinished: int = 0  # open loop: due but not answered within the drain time

    def summary(self, events_per_request: int) -> dict[str, Any]:
        lat = sorted(x * 1000.0 for x in self.latencies_s)
        ok = self.status.get(200, 0)
        per_s = ok / self.elapsed_s if self.elapsed_s else 0.0
        return {
            "requests": self.requests,
            "ok_requests": ok,
            "errors": self.errors,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(per_s, 1),
            "events_per_s": round(per_s * events_per_request, 1),
            "ack_p50_ms": round(percentile(lat, 50), 3),
            "ack_p99_ms": round(percentile(lat, 99), 3),
            "ack_max_ms": round(lat[-1], 3) if lat else 0.0,
        }


@dataclass
class _Progress:
    first: int  # request number of this run's first request
    deadline: float
    sent: int = 0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    started: float,
    result: LoadResult,
) -> bool:
    """Send one request, read its answer and record it, latency from ``started``; False
    when the connection broke (counted as an error)."""
    writer.write(request)
    try:
        status = await _read_response(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        result.errors += 1
        return False
    result.latencies_s.append(time.perf_counter() - started)
    result.requests += 1
    result.status[status] = result.status.get(status, 0) + 1
    return True


async def _worker(spec: LoadSpec, progress: _Progress, result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    head = (
        f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
        f"Content-Type: {spec.content_type}\r\n"
    ).encode()
    bodies = spec.bodies
    try:
        while time.perf_counter() < progress.deadline and progress.sent < spec.max_requests:
            n = progress.first + progress.sent
            progress.sent += 1
            body = bodies[n % len(bodies)].replace(PLACEHOLDER, b"%012x" % n)
            request = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
            if not await _exchange(reader, writer, request, time.perf_counter(), result):
                return
    finally:
        writer.close()


async def _run(spec: LoadSpec) -> LoadResult:
    pid = os.getpid()
    result = LoadResult()
    start = time.perf_counter()
    progress = _Progress(_next_request.get(pid, pid << 32), start + spec.duration_s)
    try:
        await asyncio.gather(*(_worker(spec, progress, result) for _ in range(spec.concurrency)))
    finally:
        _next_request[pid] = progress.first + progress.sent
    result.elapsed_s = time.perf_counter() - start
    return result


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_closed_loop(spec: LoadSpec) -> LoadResult:
    """Each connection sends requests back to back until time or the request cap runs out.

    ``PLACEHOLDER`` in a body (event-id prefixes) is replaced by a request number unique
    to this process and run, so every request carries fresh idempotency keys.
    """
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run(spec))


@dataclass(frozen=True)
class OpenLoopSpec:
    """``requests`` (method, path, body) round robin at a fixed ``rate`` per second.

    Open loop: a request is due at its scheduled time whether or not earlier ones have
    been answered, and its latency counts from that time, so a slow server's queueing
    shows up in the percentiles (no coordinated omission).
    """

    port: int
    requests: list[tuple[str, str, bytes]]
    rate: float
    duration_s: float = 10.0
    connections: int = 32
    host: str = "127.0.0.1"
    # After the last request is due, answers are awaited this long; a saturated server's
    # backlog beyond it is counted as ``unfinished`` (so a run is bounded in time).
    drain_s: float = 30.0


async def _open_worker(
    spec: OpenLoopSpec, due: asyncio.Queue[tuple[float, int] | None], result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    try:
        while (job := await due.get()) is not None:
            scheduled, n = job
            method, path, body = spec.requests[n % len(spec.requests)]
            head = f"{method} {path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            if body:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            request = head.encode() + b"\r\n" + body
            if not await _exchange(reader, writer, request, scheduled, result):
                return
    finally:
        writer.close()


async def _open_run(spec: OpenLoopSpec) -> LoadResult:
    result = LoadResult()
    due: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()
    workers = [
        asyncio.create_task(_open_worker(spec, due, result)) for _ in range(spec.connections)
    ]
    start = time.perf_counter()
    total = int(spec.rate * spec.duration_s)
    for n in range(total):
        scheduled = start + n / spec.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((scheduled, n))
    for _ in workers:
        due.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=spec.drain_s)
    for worker in pending:
        worker.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result.elapsed_s = time.perf_counter() - start
    result.unfinished = total - result.requests - result.errors
    return result


def run_open_loop(spec: OpenLoopSpec) -> LoadResult:
    """Send ``rate * duration_s`` requests on schedule; latencies from their due times."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_open_run(spec))
