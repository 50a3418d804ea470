"""``hotshelf embed`` and ``hotshelf finetune`` on a simulated store's catalog and traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hotshelf.cli import app

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with a 100-item simulated catalog and 4,000 events in the batch lane."""
    root = tmp_path_factory.mktemp("store")
    catalog, events, data = root / "catalog.jsonl", root / "events.ndjson", root / "data"
    code, _, err = _invoke("simulate", "-n", "4000", "--items", "100", "--seed", "3",
                           "--catalog-out", str(catalog), "-o", str(events))  # fmt: skip
    assert code == 0, err
    assert _invoke("items", "load", str(catalog), "--data-dir", str(data))[0] == 0
    code, _, err = _invoke("ingest", str(events), "--max-past-days", "30", "--data-dir", str(data))
    assert code == 0, err
    return data


def test_embed_encodes_only_what_changed(store: Path, tmp_path: Path) -> None:
    code, _, err = _invoke("embed", "--data-dir", str(store))
    assert code == 0, err
    assert "encoded 100 item(s)" in err
    assert "100 item(s) embedded" in err
    code, _, err = _invoke("embed", "--data-dir", str(store))
    assert "encoded 0 item(s)" in err
    edited = tmp_path / "edit.jsonl"
    edited.write_text(json.dumps({"item_id": "sku-000007", "title": "Cordless Drill 18V"}) + "\n")
    assert _invoke("items", "load", str(edited), "--data-dir", str(store))[0] == 0
    code, _, err = _invoke("embed", "--data-dir", str(store))
    assert code == 0, err
    assert "encoded 1 item(s)" in err


def test_embed_refuses_a_missing_model_dir(store: Path, tmp_path: Path) -> None:
    code, _, err = _invoke("embed", "--model-dir", str(tmp_path / "nope"), "--data-dir", str(store))
    assert code == 2  # typer checks that the directory exists
    assert "nope" in err


def test_finetune_trains_on_co_engaged_pairs_and_reports_recall(store: Path) -> None:
    code, out, err = _invoke("finetune", "--epochs", "1", "--min-count", "1", "--per-item", "3",
                             "--data-dir", str(store))  # fmt: skip
    assert code == 0, err
    assert "held-out recall@10:" in err
    model_dir = Path(out.strip().splitlines()[-1])
    assert (model_dir / "model.onnx").is_file()
    assert model_dir.parent == store / "models"
    # the new model re-encodes the whole catalog
    code, _, err = _invoke("embed", "--model-dir", str(model_dir), "--data-dir", str(store))
    assert code == 0, err
    assert "encoded 100 item(s)" in err
    assert model_dir.name in err


def test_finetune_says_when_there_are_too_few_pairs(store: Path) -> None:
    code, _, err = _invoke("finetune", "--min-count", "100000", "--data-dir", str(store))
    assert code == 1
    assert "only 0 co-engaged pair(s)" in err
