"""``hotshelf stream run``: partition checks, and a run stopped by SIGTERM (file backend)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.stream._snapshot import SnapshotStore, decode_snapshot

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["stream", "run", *args])
    return result.exit_code, result.stderr


def test_the_partition_count_must_be_the_configured_one(tmp_path: Path) -> None:
    code, err = _run("--partition", "1/2", "--data-dir", str(tmp_path))
    assert code == 1
    assert "stream.partitions" in err


def test_a_malformed_partition_is_refused(tmp_path: Path) -> None:
    for bad in ("x", "2/2", "1/0"):
        code, err = _run("--partition", bad, "--data-dir", str(tmp_path))
        assert code == 1, bad
        assert "partition" in err


def test_sigterm_stops_the_processor_after_a_last_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotshelf", "stream", "run", "--partition", "1",
         "--data-dir", str(data), "--set", "stream.partitions=2", "--set", "log.fsync=false"],
        cwd=tmp_path, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    started = proc.stderr.readline().decode()  # printed once the processor is up
    assert "stream partition 1/2: resuming at events=0" in started
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"stream partition 1/2: caught up (0 records)" in err  # and frozen, before run
    assert b"stopped at" in err
    snapshot = SnapshotStore(data / "stream" / "p1of2").read()
    assert snapshot is not None
    assert decode_snapshot(snapshot).lanes["rt"].offsets == {"events": 0, "catalog": 0}
