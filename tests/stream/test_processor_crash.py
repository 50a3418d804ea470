"""SIGKILL the stream processor at random moments while the simulator streams into the log.

A worker process appends simulated events (and now and then a catalog change) to
the file log from one thread while its processor consumes them and snapshots every
100 ms; the test kills it at random moments, over and over, then lets a last one
finish: its final snapshot must equal, byte for byte, a clean rebuild from the log.
"""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from hotshelf.config import Config
from hotshelf.events import encode_stored_event
from hotshelf.log import FileLog
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.stream._processor import StreamProcessor, default_bot_filter_factory
from hotshelf.stream._snapshot import SnapshotStore, decode_snapshot
from tests.stream.simulated import config, open_logs, stored, upserts

REPO = Path(__file__).resolve().parents[2]
TARGET = 40_000  # events the simulator streams in all
ROUNDS = 22
SIM = SimConfig(seed=9, n_items=400, events_per_s=300.0)


def crash_config(root: Path) -> Config:
    # A grace far above what an unsynced append takes, so a slow, shared machine cannot
    # reorder a catalog change; snapshots often, so kills land in and around them.
    return config(root / "run", snapshot_interval_s=0.1, catalog_grace_ms=1000)


def _append(events_log: FileLog, catalog_log: FileLog, finish: bool) -> None:
    sim = StoreSimulator(SIM)
    if catalog_log.end_offset == 0:
        catalog_log.append(upserts(sim.catalog()))
    items = sim.catalog()
    rest = itertools.islice(stored(sim.events(TARGET)), events_log.end_offset, None)
    for n in itertools.count():
        batch = [encode_stored_event(e) for e in itertools.islice(rest, 50)]
        if not batch:
            return
        events_log.append(batch)
        if n % 15 == 7:  # an item moves to another item's category
            moved = items[(events_log.end_offset * 7) % len(items)]
            other = items[(events_log.end_offset * 13) % len(items)]
            changed = msgspec.structs.replace(moved, category=other.category)
            catalog_log.append(upserts([changed], events_log.end_offset))
        if not finish:
            time.sleep(0.02)


def worker(root_text: str, finish: bool) -> None:
    """The process under test: appender thread plus processor; ``finish`` runs to the end."""
    root = Path(root_text)
    cfg = crash_config(root)
    events_log, catalog_log = open_logs(root / "log", cfg)
    appender = threading.Thread(target=_append, args=(events_log, catalog_log, finish), daemon=True)
    appender.start()
    processor = StreamProcessor(cfg, events_log, catalog_log, default_bot_filter_factory(cfg))
    stop = threading.Event()
    runner = threading.Thread(target=processor.run, args=(stop,))
    runner.start()
    if not finish:
        runner.join()  # until killed
    appender.join()
    while not processor.caught_up():
        time.sleep(0.01)
    stop.set()
    runner.join()
    processor.close()
    events_log.close()
    catalog_log.close()


def _start(root: Path, finish: bool) -> subprocess.Popen[bytes]:
    code = f"from tests.stream.test_processor_crash import worker; worker({str(root)!r}, {finish})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO)


def _snapshot_offsets(root: Path) -> int:
    data = SnapshotStore(root / "run" / "stream").read()
    return -1 if data is None else decode_snapshot(data).lanes["rt"].offsets["events"]


@pytest.mark.slow
def test_sigkilled_at_random_moments_the_processor_ends_equal_to_a_clean_rebuild(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261122)
    progress = []
    for _ in range(ROUNDS):
        process = _start(tmp_path, finish=False)
        time.sleep(rng.uniform(0.4, 2.4))  # in start-up, mid-batch, mid-snapshot ...
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
        progress.append(_snapshot_offsets(tmp_path))
    # it got somewhere, and was killed with work in flight more than once
    assert progress[-1] > 0, progress
    assert len(set(progress)) > ROUNDS // 3, progress

    process = _start(tmp_path, finish=True)
    assert process.wait(120) == 0

    cfg = crash_config(tmp_path)
    events_log, catalog_log = open_logs(tmp_path / "log", cfg)
    try:
        assert events_log.end_offset == TARGET
        clean_cfg = config(tmp_path / "clean", catalog_grace_ms=1000)
        clean = StreamProcessor(
            clean_cfg, events_log, catalog_log, default_bot_filter_factory(clean_cfg), group="clean"
        )
        clean.catch_up(timeout_s=60)
        expected = clean.snapshot_bytes()
        clean.close()
    finally:
        events_log.close()
        catalog_log.close()
    final = SnapshotStore(cfg.data_path / "stream").read()
    assert final is not None
    assert decode_snapshot(final).lanes["rt"].offsets["events"] == TARGET
    assert final == expected
