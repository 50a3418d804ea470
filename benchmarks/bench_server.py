"""Which server stack for the ingest API: framework x server, durability off and on.

    python -m benchmarks.bench_server [--duration 5] [--concurrency 16] [--repeat 3]
        [--batch 100] [--pin] [--only NAME]

Apps: hotshelf's bare ASGI app (``hotshelf.serving.create_app``) and the same
``Service`` behind Starlette. Servers: uvicorn (uvloop + httptools) and granian
(ASGI interface, uvloop), one worker each. For every pair a real server process is
started on loopback over a fresh data directory, and a load generator in its own
process POSTs 100-event NDJSON bodies (fresh event ids per request) to /v1/events
for a bounded time (about 8 stacks x repeat x (duration + 3 s) in all). Stacks run
round robin ``--repeat`` times; JSON on stdout gives medians of requests/s, events/s,
p50/p99 acknowledgement latency and server CPU per event (from /proc), with ratios
against bare+uvicorn in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from typing import Any

from benchmarks._loadgen import PLACEHOLDER, LoadSpec, medians
from benchmarks._servers import measure, running_server
from benchmarks.bench_events import make_body
from hotshelf.testing import free_port

BATCH = 100
_MEDIANS = ("requests_per_s", "events_per_s", "ack_p50_ms", "ack_p99_ms",
            "server_cpu_us_per_event", "ready_after_s")  # fmt: skip
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


# -- running one stack ------------------------------------------------------------------


def stack_command(app: str, server: str, port: int) -> list[str]:
    """The command serving ``app`` ("bare", "starlette") with ``server`` on ``port``."""
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "benchmarks.bench_server",
            "--serve",
            app,
            "--port",
            str(port),
        ]
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
        "--workers", "1", "--port", str(port), "--no-ws", "--log-level", "warning",
        "--factory", f"benchmarks.bench_server:{app}_app",
    ]  # fmt: skip


def run_stack(app: str, server: str, fsync: bool, bodies: list[bytes], args: Any) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-server-") as data_dir:
        overrides = [
            f"data_dir={json.dumps(data_dir)}", f"log.fsync={str(fsync).lower()}",
            'logging.level="warning"',
            "stream.serve=false",  # the HTTP stacks alone; bench_ingest measures the processor
        ]  # fmt: skip
        env = {**os.environ, ENV_CONFIG: json.dumps(overrides)}
        cmd = stack_command(app, server, port)
        with running_server(cmd, port, env=env, cpus={0} if args.pin else None) as proc:
            spec = LoadSpec(port, bodies, concurrency=args.concurrency, duration_s=args.duration)
            return measure(proc, spec, args.batch, cpus={1} if args.pin else None)


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
        "--pin", action="store_true", help="server on CPU 0, load generator on CPU 1"
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
        results["runs"][key] = {
            **medians(runs, _MEDIANS),
            "repeats": len(runs),
            "status": runs[0]["status"],
        }
    for key, run in results["runs"].items():
        base = results["runs"].get("bare+uvicorn/" + key.split("/")[1], {})
        for metric in ("events_per_s", "server_cpu_us_per_event"):
            if base.get(metric) and run.get(metric) is not None:
                run[f"{metric}_vs_bare_uvicorn"] = round(run[metric] / base[metric], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
