"""``hotshelf train`` on a simulated store's traffic: the model it saves is the one
``load_current`` serves; it refuses clearly while the log is open elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.config import LogConfig
from hotshelf.log import FileLog
from hotshelf.recommend._collaborative import load_current

runner = CliRunner()
# the settings the library tests found to learn on a simulated store this small
ALS = ["--set", "recommend.cf.factors=32", "--set", "recommend.cf.regularization=20.0"]


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with 12,000 simulated events (bots included) in the batch lane."""
    root = tmp_path_factory.mktemp("store")
    events, data = root / "events.ndjson", root / "data"
    code, _, err = _invoke("simulate", "-n", "12000", "--items", "150", "--visitors", "400",
                           "--rate", "50", "--seed", "2", "-o", str(events))  # fmt: skip
    assert code == 0, err
    code, _, err = _invoke("ingest", str(events), "--max-past-days", "30", "--data-dir", str(data))
    assert code == 0, err
    return data


def test_train_saves_the_model_the_service_loads(store: Path) -> None:
    code, out, err = _invoke("train", *ALS, "--data-dir", str(store))
    assert code == 0, err
    model_dir = Path(out.strip().splitlines()[-1])
    assert model_dir.parent == store / "models" / "cf"
    model = load_current(store)
    assert model is not None
    assert model_dir.name == model.version
    assert model.offsets == {"events.batch": 12_000, "events": 0}
    for shown in (model.version, f"{model.manifest.visitors:,}", "bot events", "als, 32 factors"):
        assert shown in err
    assert "recall@10" not in err  # only with --check
    visitor = model.visitors[0]
    assert len(model.recommend(visitor, 10)) == 10


def test_train_check_reports_recall_against_popularity(store: Path) -> None:
    code, _, err = _invoke("train", "--check", "--set", "recommend.cf.algorithm=bpr",
                           "--data-dir", str(store))  # fmt: skip
    assert code == 0, err
    assert "recall@10" in err
    assert "vs popularity" in err
    model = load_current(store)
    assert model is not None
    assert model.version.startswith("bpr-")


def test_train_refuses_while_the_log_is_open_elsewhere(store: Path) -> None:
    with FileLog(store / "log" / "events", LogConfig(fsync=False)):  # as `hotshelf serve` holds it
        code, _, err = _invoke("train", "--data-dir", str(store))
    assert code == 1
    assert "is open elsewhere" in " ".join(err.split())  # rich wraps the line
    assert "Traceback" not in err


def test_train_without_traffic_says_so(tmp_path: Path) -> None:
    code, _, err = _invoke("train", "--data-dir", str(tmp_path))
    assert code == 1
    assert "no feedback events to train on" in err
    assert load_current(tmp_path) is None
