"""Real server processes for the HTTP benchmarks, and the load generator's own process.

A benchmark starts a server command (``hotshelf serve``, or another stack) on a free
loopback port with ``running_server``, waits for ``/readyz``, and ``measure`` warms it
up and then loads it from a second process, reading the server's CPU time from /proc
around the run: CPU per event holds up on a busy machine far better than throughput.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._loadgen import LoadSpec, OpenLoopSpec, percentile, run_closed_loop, run_open_loop
from hotshelf.testing import RedisServer, find_redis_server

__all__ = [
    "ServerProcess",
    "hotshelf_serve_command",
    "load_in_process",
    "measure",
    "open_loop_in_process",
    "private_redis",
    "running_server",
    "thread_cpu_s",
    "tree_cpu_s",
    "wait_ready",
]


def hotshelf_serve_command(
    port: int, data_dir: str, overrides: Sequence[str] = (), *, stream: bool = True
) -> list[str]:
    """``hotshelf serve`` on ``port`` over ``data_dir``, quiet logs, plus ``--set`` overrides;
    ``stream=False`` serves without the stream processor (``stream.serve=false``)."""
    cmd = [sys.executable, "-m", "hotshelf", "serve", "--port", str(port), "--data-dir", data_dir]
    sets = ['logging.level="warning"', *overrides]
    if not stream:
        sets.append("stream.serve=false")
    for override in sets:
        cmd += ["--set", override]
    return cmd


@dataclass(frozen=True)
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    ready_after_s: float

    def cpu_s(self) -> float:
        """CPU seconds the server (with its worker processes) has used so far."""
        return tree_cpu_s(self.proc.pid)

    def main_thread_cpu_s(self) -> float:
        """CPU seconds of the server's main thread alone (``hotshelf serve``'s event loop):
        one thread can use one core at most, however many the machine has."""
        return thread_cpu_s(self.proc.pid, self.proc.pid)


def _pin(cpus: set[int] | None) -> Callable[[], None] | None:
    return functools.partial(os.sched_setaffinity, 0, cpus) if cpus else None


@contextmanager
def running_server(
    cmd: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    timeout_s: float = 60.0,
) -> Iterator[ServerProcess]:
    """Start ``cmd`` (listening on ``port``, pinned to ``cpus``), ready; terminated on exit."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, preexec_fn=_pin(cpus))
    try:
        yield ServerProcess(proc, port, wait_ready(port, proc, timeout_s))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> float:
    """Seconds until ``GET /readyz`` answers 200; raises if the server exits or times out."""
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


def _stat_fields(path: str) -> list[str] | None:
    """The fields of a ``/proc`` ``stat`` file after the command name (None once gone):
    [1] is the parent pid, [11] and [12] the user and system CPU in clock ticks."""
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def thread_cpu_s(pid: int, tid: int) -> float:
    """User + system CPU seconds of thread ``tid`` of process ``pid`` (0.0 once gone)."""
    fields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (granian forks a worker)."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(f"/proc/{entry}/stat")
        if fields is None:
            continue
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree = {pid}
    for _ in range(4):  # a few generations deep is plenty
        tree |= {p for p, (ppid, _) in stats.items() if ppid in tree}
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def _load_process(spec: LoadSpec, events_per_request: int, cpus: set[int] | None, out: Any) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    out.put(run_closed_loop(spec).summary(events_per_request))


def load_in_process(
    spec: LoadSpec, events_per_request: int, *, cpus: set[int] | None = None
) -> dict[str, Any]:
    """Run the load generator in its own process (pinned to ``cpus``); its summary."""
    queue: mp.Queue[dict[str, Any]] = mp.Queue()
    worker = mp.Process(target=_load_process, args=(spec, events_per_request, cpus, queue))
    worker.start()
    try:
        return queue.get(timeout=spec.duration_s + 60)
    finally:
        worker.join(timeout=30)


def measure(
    server: ServerProcess, spec: LoadSpec, events_per_request: int, *, cpus: set[int] | None = None
) -> dict[str, Any]:
    """Warm ``server`` up, load it from another process: the summary plus server CPU per event."""
    run_closed_loop(spec.warm_up())
    cpu_before = server.cpu_s()
    summary = load_in_process(spec, events_per_request, cpus=cpus)
    cpu = server.cpu_s() - cpu_before
    events = summary["ok_requests"] * events_per_request
    summary["server_cpu_us_per_event"] = round(cpu / events * 1e6, 2) if events else None
    summary["ready_after_s"] = round(server.ready_after_s, 2)
    return summary


@contextmanager
def private_redis(appendfsync: str = "everysec") -> Iterator[RedisServer | None]:
    """A private redis-server over a temporary directory, or None when there is no binary."""
    binary = find_redis_server()
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-redis-") as workdir:
        server = RedisServer(binary, Path(workdir), appendfsync=appendfsync)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _open_loop_process(spec: OpenLoopSpec, out: Any) -> None:
    cpu = time.process_time()
    result = run_open_loop(spec)
    cpu = time.process_time() - cpu
    latencies = sorted(x * 1000.0 for x in result.latencies_s)
    out.put({
        "requests": result.requests,
        "errors": result.errors,
        "unfinished": result.unfinished,
        "status": {str(k): v for k, v in sorted(result.status.items())},
        "target_rate": spec.rate,
        "achieved_rate": round(result.requests / result.elapsed_s, 1) if result.elapsed_s else 0,
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(latencies[-1], 3) if latencies else 0.0,
        # the generator's own CPU over the run: the same work at the same rate, so a
        # row run in a slow phase of a shared VM shows here while it lasts
        "load_cpu_s": round(cpu, 2),
    })  # fmt: skip


def open_loop_in_process(spec: OpenLoopSpec) -> dict[str, Any]:
    """``run_open_loop(spec)`` in its own process (its own core): counts, percentiles and
    the generator's CPU seconds (``load_cpu_s``)."""
    queue: mp.Queue[dict[str, Any]] = mp.Queue()
    worker = mp.Process(target=_open_loop_process, args=(spec, queue))
    worker.start()
    try:
        return queue.get(timeout=spec.duration_s + spec.drain_s + 60)
    finally:
        worker.join(timeout=30)
