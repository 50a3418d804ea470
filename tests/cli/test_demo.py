"""``hotshelf demo``: the whole walkthrough against a real server process."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.testing import free_port

runner = CliRunner()


def _demo(data: Path, *extra: str) -> tuple[int, str]:
    args = ["demo", "--events", "2000", "--items", "200", "--port", str(free_port()),
            "--exit-after", "0", "--data-dir", str(data), *extra]  # fmt: skip
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def _records(out: str, topic: str) -> int:
    found = re.search(rf"log {topic}: ([\d,]+) records", out)
    assert found is not None, out
    return int(found[1].replace(",", ""))


def test_demo_runs_the_loop_and_verifies_the_log(tmp_path: Path) -> None:
    code, out = _demo(tmp_path / "demo")
    assert code == 0, out
    assert "ingested 2,000 events durably" in out
    assert '"duplicates": 1' in out  # the retried event was acknowledged, not stored again
    assert "validation_error" in out
    # 2,000 events, the retried one, one impression per recommendation shown, the click
    assert _records(out, "events") >= 2_001 + 4 + 1
    assert "log catalog: 200 records" in out
    assert "GET /v1/trending?k=5" in out
    assert "GET /v1/bots?limit=3" in out
    assert "POST /v1/search" in out
    assert "/similar?k=5" in out
    assert "stream state rebuilt from offset 0" in out
    assert "byte-identical" in out  # the replay equals what the server kept live
    for shopper in ("a new visitor", "a returning buyer", "browsing now", "routes blended"):
        assert shopper in out
    assert "is serving" in out  # the collaborative model the server trained on the log
    # the generic route says trending or popular (recommend.trending_weight decides which
    # ranks first), the personal and browsing routes say why
    assert "trending near you" in out or "popular near you" in out
    for reason in ("customers like you bought", "because you viewed"):
        assert reason in out
    assert '"clicked_impressions": 1' in out  # the demo's click, attributed
    # a second run starts from scratch in its own directory
    code, out = _demo(tmp_path / "demo")
    assert code == 0, out
    assert _records(out, "events") >= 2_006


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    code, out = _demo(tmp_path)
    assert code == 1
    assert "not made by the demo" in out
    assert (tmp_path / "precious.txt").exists()
