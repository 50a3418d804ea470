"""``hotshelf ingest``: bulk import on the batch lane, all or nothing, idempotent."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.config import load_config
from hotshelf.events import decode_stored_event
from hotshelf.log import open_log

runner = CliRunner()


def _events(n: int, *, start: int = 0) -> list[dict[str, object]]:
    now = time.time()
    return [
        {"type": "view", "event_id": f"e{i}", "cookie_id": f"c{i % 7}", "item_id": f"i{i % 13}",
         "timestamp": now - 60 + i / 1000}
        for i in range(start, start + n)
    ]  # fmt: skip


def _write(path: Path, events: list[dict[str, object]], *, blank_every: int = 0) -> Path:
    lines = []
    for i, event in enumerate(events):
        if blank_every and i % blank_every == 0:
            lines.append("")
        lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")
    return path


def _stored(data: Path, topic: str = "events.batch") -> list[tuple[str, str]]:
    cfg = load_config(overrides=[f"data_dir={json.dumps(str(data))}"], environ={})
    with open_log(cfg, topic) as log:
        records = log.read(0, 100_000) if log.end_offset else []
    return [(e.event_id, e.lane) for e in map(decode_stored_event, (r.value for r in records))]


def _ingest(data: Path, file: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["ingest", str(file), "--data-dir", str(data), *extra])
    return result.exit_code, result.output


def test_ingest_appends_on_the_batch_lane_and_is_idempotent(tmp_path: Path) -> None:
    data, file = tmp_path / "data", _write(tmp_path / "ev.ndjson", _events(2500), blank_every=97)
    code, out = _ingest(data, file, "--batch", "1000")
    assert code == 0, out
    assert "ingested 2500" in out
    stored = _stored(data)
    assert [eid for eid, _ in stored] == [f"e{i}" for i in range(2500)]
    assert {lane for _, lane in stored} == {"batch"}
    code, out = _ingest(data, file)  # a re-run after a crash stores nothing twice
    assert code == 0, out
    assert "2500 duplicate" in out
    assert len(_stored(data)) == 2500


def test_events_already_sent_live_are_not_imported_again(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    assert _ingest(elsewhere, _write(tmp_path / "live.ndjson", _events(10)))[0] == 0
    cfg, other = (
        load_config(overrides=[f"data_dir={json.dumps(str(d))}"], environ={})
        for d in (data, elsewhere)
    )
    with open_log(cfg, "events") as events, open_log(other, "events.batch") as batch:
        events.append([r.value for r in batch.read(0, 10)])  # as if they had come live
    code, out = _ingest(data, _write(tmp_path / "ev.ndjson", _events(20)))
    assert code == 0, out
    assert "10 duplicate" in out
    assert [eid for eid, _ in _stored(data)] == [f"e{i}" for i in range(10, 20)]


def test_a_bad_line_rejects_the_whole_file_with_its_line_number(tmp_path: Path) -> None:
    events = _events(50)
    events[30] = {"type": "view", "cookie_id": "c"}  # no item_id
    events[41]["timestamp"] = "not a time"
    file = _write(tmp_path / "ev.ndjson", events, blank_every=10)
    code, out = _ingest(tmp_path / "data", file, "--batch", "16")
    assert code == 1
    # a blank line precedes every 10th event: event 30 is on line 35, event 41 on 47
    assert "line 35: item_id" in out
    assert "line 47: timestamp" in out
    assert "nothing was ingested" in out
    assert _stored(tmp_path / "data") == []


def test_old_events_need_max_past_days(tmp_path: Path) -> None:
    events = _events(5)
    for event in events:
        event["timestamp"] = time.time() - 30 * 86400
    file = _write(tmp_path / "old.ndjson", events)
    code, out = _ingest(tmp_path / "data", file)
    assert code == 1
    assert "timestamp" in out
    code, out = _ingest(tmp_path / "data", file, "--max-past-days", "60")
    assert code == 0, out
    assert len(_stored(tmp_path / "data")) == 5


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _ = _ingest(tmp_path / "data", tmp_path / "absent.ndjson")
    assert code == 2
