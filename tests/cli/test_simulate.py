"""``hotshelf simulate``: files, POSTing to a real HTTP server, usage errors."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.events import Event, Item
from hotshelf.simulation import GroundTruth, SimConfig, StoreSimulator
from hotshelf.testing import free_port

runner = CliRunner()
START = "1750000000000"


class Collector(ThreadingHTTPServer):
    """A loopback server that records each POST and answers with ``status``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[tuple[str, str, bytes]] = []
        self.connections: set[int] = set()
        self.status = 202
        self.unavailable = 0  # answer this many requests with 503 first

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.connections.add(self.client_address[1])
        self.server.bodies.append((self.path, self.headers["Content-Type"], body))
        status = self.server.status
        if self.server.unavailable > 0:
            self.server.unavailable -= 1
            status = 503
        reply = b'{"error": "nope"}' if status >= 400 else b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def simulate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["simulate", "--start-ms", START, *args])
    return result.exit_code, result.output


def test_writes_events_labels_truth_and_catalog(tmp_path: Path) -> None:
    out, labels = tmp_path / "events.ndjson", tmp_path / "labels.csv"
    truth, catalog = tmp_path / "truth.json", tmp_path / "items.jsonl"
    code, output = simulate(
        "-n", "3000", "--seed", "4", "--out", str(out), "--labels", str(labels),
        "--truth", str(truth), "--catalog-out", str(catalog), "--items", "300",
    )  # fmt: skip
    assert code == 0, output
    lines = out.read_bytes().splitlines()
    events = [msgspec.json.decode(line, type=Event) for line in lines]
    assert len(events) == 3000
    assert b"null" not in out.read_bytes()  # unset fields are left out
    with labels.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    assert {r["label"] for r in rows} <= {"human", "crawler", "slow_bot", "click_spam"}
    items = [msgspec.json.decode(line, type=Item) for line in catalog.read_bytes().splitlines()]
    assert len(items) == 300
    expected = StoreSimulator(SimConfig(seed=4, n_items=300, start_ms=int(START)))
    assert msgspec.json.decode(truth.read_bytes(), type=GroundTruth) == expected.ground_truth
    assert [e.event_id for e in events[:10]] == [s.event.event_id for s in expected.events(10)]


def test_duration_to_stdout() -> None:
    code, output = simulate("--duration", "2", "--rate", "200", "--out", "-")
    assert code == 0
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert 250 < len(events) < 600
    assert all(int(START) <= e["timestamp"] * 1000 < int(START) + 2000 for e in events)


def test_posts_batches_over_one_connection(collector: Collector) -> None:
    code, output = simulate("-n", "1050", "--url", collector.url, "--batch", "500")
    assert code == 0, output
    assert [len(body.splitlines()) for _, _, body in collector.bodies] == [500, 500, 50]
    assert {(path, kind) for path, kind, _ in collector.bodies} == {
        ("/v1/events", "application/x-ndjson")
    }
    assert len(collector.connections) == 1


def test_an_unavailable_server_is_retried(collector: Collector) -> None:
    collector.unavailable = 1
    code, output = simulate("-n", "100", "--url", collector.url)
    assert code == 0, output
    assert len(collector.bodies) == 2
    assert collector.bodies[0][2] == collector.bodies[1][2]


def test_realtime_paces_events_to_the_clock(collector: Collector) -> None:
    started = time.monotonic()
    code, output = simulate("--duration", "1", "--rate", "50", "--url", collector.url, "--realtime")
    assert code == 0, output
    assert time.monotonic() - started > 0.8
    assert len(collector.bodies) > 5  # sent as they came due, not in one batch


def test_a_rejecting_server_stops_the_run(collector: Collector) -> None:
    collector.status = 400
    code, output = simulate("-n", "100", "--url", collector.url + "/custom")
    assert code == 1
    assert "400" in output
    assert collector.bodies[0][0] == "/custom"
    assert len(collector.bodies) == 1  # a 4xx is not retried


def test_an_unreachable_server_is_a_clear_error() -> None:
    code, output = simulate(
        "-n", "10", "--url", f"http://127.0.0.1:{free_port()}", "--retries", "1"
    )
    assert code == 1
    assert "cannot reach" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "10"], "--out"),
        (["--labels", "x.csv", "--out", "y"], "--labels"),
        (["-n", "10", "--url", "ftp://example.com"], "URL"),
        (["-n", "0", "--out", "-"], "--events"),
        (["-n", "10", "--out", "-", "--rate", "0"], "--rate"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    code, output = simulate(*args)
    assert code == 2
    assert message in output


def test_unwritable_output_exits_1(tmp_path: Path) -> None:
    code, output = simulate("-n", "10", "--out", str(tmp_path / "missing" / "e.ndjson"))
    assert code == 1
    assert "error" in output
