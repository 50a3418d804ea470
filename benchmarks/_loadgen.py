"""A lean HTTP/1.1 load generator for loopback benchmarks.

httpx/aiohttp cost more CPU per request than the server under test, so this client
speaks just enough HTTP/1.1 over asyncio (keep-alive, Content-Length responses) to
measure the server rather than itself. Runs in its own process so it gets its own
core. Every request is bounded by the run's duration and a request cap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

__all__ = ["LoadResult", "percentile", "run_closed_loop"]

PLACEHOLDER = b"@@REQID@@@@@"  # 12 bytes, replaced by a unique hex id per request


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100.0 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    status: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def summary(self, events_per_request: int) -> dict[str, float | int | dict[str, int]]:
        lat = sorted(x * 1000.0 for x in self.latencies_s)
        ok = self.status.get(200, 0)
        return {
            "requests": self.requests,
            "ok_requests": ok,
            "errors": self.errors,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(ok / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "events_per_s": round(ok * events_per_request / self.elapsed_s, 1)
            if self.elapsed_s
            else 0.0,
            "ack_p50_ms": round(percentile(lat, 50), 3),
            "ack_p99_ms": round(percentile(lat, 99), 3),
            "ack_max_ms": round(lat[-1], 3) if lat else 0.0,
        }


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    counter: list[int],
    deadline: float,
    max_requests: int,
    result: LoadResult,
    content_type: str,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
    ).encode()
    try:
        while time.perf_counter() < deadline and counter[0] < max_requests:
            n = counter[0]
            counter[0] += 1
            body = bodies[n % len(bodies)].replace(PLACEHOLDER, b"%012x" % n)
            start = time.perf_counter()
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                return
            result.latencies_s.append(time.perf_counter() - start)
            result.requests += 1
            result.status[status] = result.status.get(status, 0) + 1
    finally:
        writer.close()


async def _run(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    concurrency: int,
    duration_s: float,
    max_requests: int,
    content_type: str,
) -> LoadResult:
    result = LoadResult()
    counter = [0]
    start = time.perf_counter()
    deadline = start + duration_s
    await asyncio.gather(
        *(
            _worker(host, port, path, bodies, counter, deadline, max_requests, result, content_type)
            for _ in range(concurrency)
        )
    )
    result.elapsed_s = time.perf_counter() - start
    return result


def run_closed_loop(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    content_type: str = "application/x-ndjson",
) -> LoadResult:
    """``concurrency`` connections each send requests back to back until time or count runs out.

    Each body may contain ``PLACEHOLDER`` (event-id prefixes): it is replaced by the
    request number so every request carries fresh idempotency keys.
    """
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(
            _run(host, port, path, bodies, concurrency, duration_s, max_requests, content_type)
        )
