"""open_log: backend choice and the topics retention must never trim."""

from __future__ import annotations

from pathlib import Path

from hotshelf.config import Config, LogConfig
from hotshelf.log import FileLog, open_log


def test_file_backend_per_topic_directory(tmp_path: Path) -> None:
    cfg = Config(data_dir=str(tmp_path))
    with open_log(cfg, "events") as log:
        assert isinstance(log, FileLog)
        log.append([b"x"])
    assert (tmp_path / "log" / "events").is_dir()


def test_catalog_topic_is_never_trimmed(tmp_path: Path) -> None:
    cfg = Config(
        data_dir=str(tmp_path),
        log=LogConfig(retention_hours=0.0, retention_bytes=1, segment_max_bytes=256),
    )
    with open_log(cfg, "catalog") as catalog, open_log(cfg, "events") as events:
        for i in range(50):
            catalog.append([b"item-%d" % i * 10])
            events.append([b"event-%d" % i * 10])
        assert catalog.apply_retention() == 0
        assert catalog.start_offset == 0
        assert events.apply_retention() > 0
        assert events.start_offset > 0
