"""``hotshelf demo``: the whole walkthrough against a real server process."""

from __future__ import annotations

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


def test_demo_runs_the_loop_and_verifies_the_log(tmp_path: Path) -> None:
    code, out = _demo(tmp_path / "demo")
    assert code == 0, out
    assert "ingested 2,000 events durably" in out
    assert '"duplicates": 1' in out  # the retried event was acknowledged, not stored again
    assert "validation_error" in out
    assert "log events: 2,001 records" in out
    assert "log catalog: 200 records" in out
    assert "GET /v1/trending?k=5" in out
    assert "GET /v1/bots?limit=3" in out
    assert "POST /v1/search" in out
    assert "/similar?k=5" in out
    assert "stream state rebuilt from offset 0" in out
    assert "byte-identical" in out  # the replay equals what the server kept live
    # a second run starts from scratch in its own directory
    code, out = _demo(tmp_path / "demo")
    assert code == 0, out
    assert "log events: 2,001 records" in out


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    code, out = _demo(tmp_path)
    assert code == 1
    assert "not made by the demo" in out
    assert (tmp_path / "precious.txt").exists()
