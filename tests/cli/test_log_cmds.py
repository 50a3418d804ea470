"""``hotshelf log inspect | verify | replay`` on a real file log."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.config import load_config
from hotshelf.events import EventType, StoredEvent, encode_stored_event
from hotshelf.log import EventLog, open_log

runner = CliRunner()


def _fill(data: Path, n: int) -> None:
    cfg = load_config(overrides=[f"data_dir={json.dumps(str(data))}"], environ={})
    with open_log(cfg, "events") as log:
        _fill_log(log, n)


def _fill_log(log: EventLog, n: int, first: int = 0) -> None:
    """``n`` view events e<first>.. appended in batches of 10."""
    for start in range(first, first + n, 10):
        log.append([
            encode_stored_event(StoredEvent(
                event_id=f"e{i}", type=EventType.VIEW, ts_ms=i, received_ms=i,
                cookie_id="c", item_id=f"i{i}",
            ))
            for i in range(start, min(first + n, start + 10))
        ])  # fmt: skip


def _cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["log", *args])
    return result.exit_code, result.stdout, result.stderr


def test_inspect_shows_extent_and_decoded_records(tmp_path: Path) -> None:
    _fill(tmp_path, 30)
    code, out, err = _cli("inspect", "--data-dir", str(tmp_path), "--from", "5", "--limit", "3")
    assert code == 0, err
    assert "offsets 0..30" in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["offset"] for r in rows] == [5, 6, 7]
    assert rows[0]["record"]["event_id"] == "e5"


def test_replay_writes_every_record_in_order(tmp_path: Path) -> None:
    _fill(tmp_path, 45)
    out_file = tmp_path / "replay.ndjson"
    code, _, err = _cli("replay", "--data-dir", str(tmp_path), "--from", "10", "--to", "40",
                        "-o", str(out_file))  # fmt: skip
    assert code == 0, err
    rows = [msgspec.json.decode(line) for line in out_file.read_bytes().splitlines()]
    assert [r["record"]["event_id"] for r in rows] == [f"e{i}" for i in range(10, 40)]
    assert "replayed 30 record(s)" in err


def test_verify_clean_then_reports_damage_with_offsets(tmp_path: Path) -> None:
    _fill(tmp_path, 100)
    code, _, err = _cli("verify", "--data-dir", str(tmp_path))
    assert code == 0, err
    assert "verifies clean" in err
    segment = next((tmp_path / "log" / "events").rglob("*.log"))
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 3] ^= 0x01  # one bit, well inside the log: damage, not a torn tail
    segment.write_bytes(bytes(raw))
    code, _, err = _cli("verify", "--data-dir", str(tmp_path))
    assert code == 1
    assert "DAMAGE" in err
    assert "offsets" in err


def test_unknown_topic_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = _cli("inspect", "--topic", "nope", "--data-dir", str(tmp_path))
    assert code == 2
    assert "unknown topic" in err
