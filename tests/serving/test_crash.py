"""Crash safety: SIGKILL the real server while clients post, restart, retry, check the log.

Clients retry every request that was not acknowledged, with the same event ids, as
a real client would after a timeout. At the end every acknowledged event must be in
the log exactly once (no loss: acknowledged means durable; no duplicates: the dedup
window is rebuilt from the log at startup), and the log must verify clean.
"""

from __future__ import annotations

import collections
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from hotshelf.config import LogConfig
from hotshelf.events import decode_stored_event
from hotshelf.log import FileLog

pytestmark = pytest.mark.slow

ROUNDS = 24
CLIENTS = 4
BATCH = 20
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, port: int, data_dir: Path, log_file: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "hotshelf", "serve", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--set", "log.fsync=true",
            "--set", "embeddings.serve=false", "--set", 'logging.level="warning"',
        ]  # fmt: skip
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out)

    def wait_ready(self, timeout_s: float = 30) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_file.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise AssertionError("server did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


class Clients:
    """Threads that post batches from a shared queue; unacknowledged batches go back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.todo: queue.Queue[list[dict[str, object]]] = queue.Queue()
        self.acked: list[str] = []
        self.duplicates = 0
        self.next_id = 0
        self.lock = threading.Lock()

    def new_batch(self) -> list[dict[str, object]]:
        with self.lock:
            first, self.next_id = self.next_id, self.next_id + BATCH
        return [
            {"type": "view", "event_id": f"ev-{n:08d}", "user_id": f"u{n % 7}", "item_id": "i"}
            for n in range(first, first + BATCH)
        ]

    def run(self, stop: threading.Event, make_new: bool) -> None:
        transport = httpx.HTTPTransport(socket_options=NODELAY)
        with httpx.Client(base_url=self.url, timeout=10, transport=transport) as client:
            while not stop.is_set():
                try:
                    batch = self.todo.get_nowait()
                except queue.Empty:
                    if not make_new:
                        return
                    batch = self.new_batch()
                if not self.post(client, batch):
                    self.todo.put(batch)  # retried later, same event ids
                    time.sleep(0.01)

    def post(self, client: httpx.Client, batch: list[dict[str, object]]) -> bool:
        body = b"\n".join(msgspec.json.encode(e) for e in batch)
        try:
            response = client.post(
                "/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
            )
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            assert response.status_code in (409, 503), response.text
            return False
        with self.lock:
            self.acked.extend(str(e["event_id"]) for e in batch)
            self.duplicates += response.json()["duplicates"]
        return True

    def run_threads(self, stop: threading.Event, make_new: bool) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.run, args=(stop, make_new), daemon=True)
            for _ in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        return threads


def test_acknowledged_events_survive_sigkill_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "1234")))
    server = Server(free_port(), tmp_path / "data", tmp_path / "server.log")
    clients = Clients(server.url)
    for round_no in range(ROUNDS):
        server.start()
        if round_no % 5 == 4:
            # Now and then, die during start-up (recovery, dedup rebuild) instead.
            time.sleep(rng.uniform(0.0, 0.4))
            server.kill()
            continue
        server.wait_ready()
        stop = threading.Event()
        threads = clients.run_threads(stop, make_new=True)
        time.sleep(rng.uniform(0.05, 0.6))
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)

    # Last start: retry everything still unacknowledged, then stop cleanly.
    server.start()
    server.wait_ready()
    stop = threading.Event()
    for t in clients.run_threads(stop, make_new=False):
        t.join(timeout=60)
    assert clients.todo.empty()
    assert server.stop() in (0, -signal.SIGTERM)

    with FileLog(tmp_path / "data" / "log" / "events", LogConfig()) as log:
        report = log.verify()
        assert report.ok, report.damage
        stored = collections.Counter(
            decode_stored_event(r.value).event_id
            for offset in range(0, log.end_offset, 1000)
            for r in log.read(offset, 1000)
        )
    acked = set(clients.acked)
    assert len(acked) == len(clients.acked), "an acknowledged batch was acknowledged twice"
    assert len(acked) >= ROUNDS * BATCH  # the test did real work
    assert acked <= set(stored), f"lost: {sorted(acked - set(stored))[:10]}"
    twice = [eid for eid, n in stored.items() if n > 1]
    assert not twice, f"stored more than once: {twice[:10]}"
    # Every batch was retried until acknowledged, so nothing unacknowledged remains.
    assert set(stored) == acked
    print(f"acked={len(acked)} duplicates_acknowledged={clients.duplicates} rounds={ROUNDS}")
