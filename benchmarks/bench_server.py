"""Which server stack for the ingest API: framework x server, durability off and on.

    python -m benchmarks.bench_server [--duration 5] [--concurrency 16] [--only NAME]

Apps: hotshelf's bare ASGI app (``hotshelf.serving.create_app``) and the same
``Service`` behind Starlette. Servers: uvicorn (uvloop + httptools) and granian
(ASGI interface, uvloop), one worker each. For every pair a real server process is
started on loopback over a fresh data directory, and a load generator in its own
process POSTs 100-event NDJSON bodies (fresh event ids per request) to /v1/events
for a bounded time. Prints JSON: requests/s, events/s, p50/p99 latency; ratios are
against bare+uvicorn in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.bench_events import make_body

BATCH = 100
_MEDIANS = ("requests_per_s", "events_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_event",
            "ready_after_s")  # fmt: skip
PLACEHOLDER = b"@@@@REQID@@@@"  # 13 bytes, replaced by a unique id per request
ENV_CONFIG = "BENCH_SERVER_CONFIG"  # JSON overrides for the granian factories


# -- the apps ---------------------------------------------------------------------------


def _config_from_env() -> Any:
    from hotshelf.config import load_config

    return load_config(overrides=json.loads(os.environ[ENV_CONFIG]))


def bare_app() -> Any:
    """hotshelf's own ASGI app (granian factory)."""
    from hotshelf.monitoring import configure_logging
    from hotshelf.serving import create_app

    config = _config_from_env()
    configure_logging(config.logging)
    return create_app(config)


def starlette_app() -> Any:
    """The same Service behind Starlette routing, requests and responses."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from hotshelf.errors import HotshelfError
    from hotshelf.monitoring import configure_logging
    from hotshelf.serving import Service

    config = _config_from_env()
    configure_logging(config.logging)
    service = Service(config)
    import msgspec

    encode = msgspec.json.encode

    async def post_events(request: Request) -> Response:
        body = await request.body()
        accepted = await service.ingest_events(body, request.headers.get("content-type"))
        return Response(encode(accepted), media_type="application/json")

    async def readyz(request: Request) -> Response:
        ready = service.readiness()
        return Response(encode(ready), 200 if ready.ready else 503, media_type="application/json")

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HotshelfError)
        return JSONResponse(exc.to_dict(), exc.status)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await asyncio.to_thread(service.start)
        yield
        await asyncio.to_thread(service.close)

    return Starlette(
        routes=[
            Route("/v1/events", post_events, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={HotshelfError: on_error},
        lifespan=lifespan,
    )


def serve_uvicorn(kind: str, port: int) -> None:
    import uvicorn

    app = bare_app() if kind == "bare" else starlette_app()
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="on",
        access_log=False, log_config=None, server_header=False,
    )  # fmt: skip


# -- the load generator -----------------------------------------------------------------


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def _load(
    port: int, bodies: list[bytes], concurrency: int, duration_s: float
) -> dict[str, Any]:
    batch = bodies[0].count(b"\n") + 1
    latencies: list[float] = []
    status: dict[int, int] = {}
    counter = [os.getpid() << 32]  # ids unique across runs, warm-up included
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"POST /v1/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-ndjson\r\n"
        try:
            while time.perf_counter() < deadline:
                n = counter[0]
                counter[0] += 1
                body = bodies[n % len(bodies)].replace(PLACEHOLDER, b"%013x" % n)
                start = time.perf_counter()
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                code = await _read_status(reader)
                latencies.append(time.perf_counter() - start)
                status[code] = status.get(code, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ok = status.get(200, 0)
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100) if len(ms) > 1 else [0.0] * 99
    return {
        "requests_per_s": round(ok / elapsed, 1),
        "events_per_s": round(ok * batch / elapsed),
        "p50_ms": round(q[49], 3),
        "p99_ms": round(q[98], 3),
        "status": {str(k): v for k, v in sorted(status.items())},
    }


def _loadgen(
    port: int, bodies: list[bytes], concurrency: int, duration_s: float, out: Any, pin: bool = False
) -> None:
    import uvloop

    if pin:
        os.sched_setaffinity(0, {1})

    out.put(uvloop.run(_load(port, bodies, concurrency, duration_s)))


# -- running one stack ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64)[9:12] == b"200":
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not become ready")


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (granian forks a worker)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])))
    tree, total = {pid}, 0.0
    for _ in range(4):  # a few generations deep is plenty
        tree |= {p for p, (ppid, _) in stats.items() if ppid in tree}
    total = sum(stats[p][1] for p in tree if p in stats)
    return total / os.sysconf("SC_CLK_TCK")


def run_stack(app: str, server: str, fsync: bool, bodies: list[bytes], args: Any) -> dict[str, Any]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-server-") as data_dir:
        overrides = [
            f"data_dir={json.dumps(data_dir)}", f"log.fsync={str(fsync).lower()}",
            'logging.level="warning"',
        ]  # fmt: skip
        env = {**os.environ, ENV_CONFIG: json.dumps(overrides)}
        if server == "uvicorn":
            cmd = [sys.executable, "-m", "benchmarks.bench_server", "--serve", app]
            cmd += ["--port", str(port)]
        else:
            cmd = [
                sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
                "--workers", "1", "--port", str(port), "--no-ws", "--log-level", "warning",
                "--factory", f"benchmarks.bench_server:{app}_app",
            ]  # fmt: skip
        if args.pin:
            cmd = ["taskset", "-c", "0", *cmd]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            ready_s = _wait_ready(port, proc)
            warm = mp.Queue()  # type: ignore[var-annotated]
            _loadgen(port, bodies[-20:], 4, 0.5, warm)
            warm.get()
            queue = mp.Queue()  # type: ignore[var-annotated]
            worker = mp.Process(
                target=_loadgen,
                args=(port, bodies, args.concurrency, args.duration, queue, args.pin),
            )
            cpu_before = _tree_cpu_s(proc.pid)
            worker.start()
            result: dict[str, Any] = queue.get(timeout=args.duration + 60)
            cpu = _tree_cpu_s(proc.pid) - cpu_before
            worker.join()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result["ready_after_s"] = round(ready_s, 2)
    events = result["events_per_s"] * args.duration
    # Server CPU per event holds up on a busy machine far better than throughput does.
    result["server_cpu_us_per_event"] = round(cpu / events * 1e6, 2) if events else None
    return result


def make_bodies(count: int, batch: int = BATCH) -> list[bytes]:
    bodies = []
    for seed in range(count):
        lines = make_body(batch, seed).split(b"\n")
        bodies.append(
            b"\n".join(
                line.replace(b'"event_id":"', b'"event_id":"%s-%03d-' % (PLACEHOLDER, i), 1)
                for i, line in enumerate(lines)
            )
        )
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", help="run one stack, e.g. bare+uvicorn")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stack (medians)")
    parser.add_argument("--batch", type=int, default=BATCH, help="events per request")
    parser.add_argument(
        "--pin", action="store_true", help="server on CPU 0, load generator on CPU 1 (taskset)"
    )
    parser.add_argument("--serve", choices=["bare", "starlette"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_uvicorn(args.serve, args.port)
        return
    bodies = make_bodies(200, args.batch)
    results: dict[str, Any] = {
        "benchmark": "server",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {
            "batch": args.batch,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "pinned": args.pin,
        },
        "runs": {},
    }
    samples: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):  # round robin, so a noisy minute hits every stack alike
        for fsync in (False, True):
            for app in ("bare", "starlette"):
                for server in ("uvicorn", "granian"):
                    name = f"{app}+{server}"
                    if args.only and args.only != name:
                        continue
                    key = f"{name}/fsync={'on' if fsync else 'off'}"
                    samples.setdefault(key, []).append(run_stack(app, server, fsync, bodies, args))
    for key, runs in samples.items():
        best = {
            k: statistics.median(r[k] for r in runs) for k in _MEDIANS if runs[0][k] is not None
        }
        results["runs"][key] = {**best, "repeats": len(runs), "status": runs[0]["status"]}
    for key, run in results["runs"].items():
        base = results["runs"].get("bare+uvicorn/" + key.split("/")[1])
        if base and base["events_per_s"]:
            run["events_per_s_vs_bare_uvicorn"] = round(
                run["events_per_s"] / base["events_per_s"], 2
            )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
