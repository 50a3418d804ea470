"""``hotshelf serve`` as a process: where it listens, logs, SIGTERM, a busy port."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hotshelf.config import LogConfig
from hotshelf.log import FileLog


def serve(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "hotshelf", "serve", "--data-dir", str(data_dir), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_listens_logs_and_stops_cleanly(tmp_path: Path) -> None:
    proc = serve(tmp_path, "--port", "0", "--set", "server.access_log=true")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("hotshelf listening on http://127.0.0.1:"), line
        url = line.split()[3]
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(200):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
            body = b'{"type": "view", "user_id": "u", "item_id": "i", "event_id": "x"}'
            posted = client.post(
                "/v1/events", content=body, headers={"content-type": "application/json"}
            )
            assert posted.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM)
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    events = [x["event"] for x in lines]
    assert "service.started" in events
    assert "service.stopped" in events
    started = next(x for x in lines if x["event"] == "service.started")
    assert started["data_dir"] == str(tmp_path)
    assert "recovery_damage" in started
    access = [x for x in lines if x["event"] == "request"]
    assert any(x["route"] == "/v1/events" and x["status"] == 200 for x in access)
    # closed cleanly: the directory lock is free and the record is there
    with FileLog(tmp_path / "log" / "events", LogConfig()) as log:
        assert log.end_offset == 1
        assert log.verify().ok


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = serve(tmp_path, "--port", str(port))
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_bad_option_is_a_clear_error(tmp_path: Path) -> None:
    proc = serve(tmp_path, "--set", "server.nope=1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "invalid configuration" in err
    assert "Traceback" not in err
