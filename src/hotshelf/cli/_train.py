"""``hotshelf train``: collaborative filtering on the event logs, saved as the current model.

Reads the ``events`` and ``events.batch`` logs under data_dir to their ends, leaves
out what the bot filter flags, fits ``recommend.cf`` (ALS or BPR, ``implicit``) and
saves the model under ``data_dir/models/cf/<version>``, where ``hotshelf serve``
loads it from. The logs are opened as ``hotshelf serve`` opens them, so with the
file backend this fails clearly while the service runs: the service retrains by
itself every ``recommend.cf.retrain_s``.

``--check`` also answers "is it any good on this traffic": each visitor's last item
is held out, a second model is trained on the rest, and its recall@10 is printed
beside a popularity baseline's. It is an option because it doubles the training.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hotshelf.cli._app import app
from hotshelf.cli._options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    cli_errors,
    config_from_options,
    err_console,
)

if TYPE_CHECKING:
    from hotshelf.recommend._cf_check import HeldOutReport
    from hotshelf.recommend._collaborative import CollaborativeModel
    from hotshelf.recommend._interactions import Interactions


@app.command()
def train(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Also report held-out recall@10 against popularity (twice the time)."
        ),
    ] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Train collaborative filtering on the logged events and make it the current model."""
    from hotshelf.log import open_log
    from hotshelf.recommend._cf_check import held_out_check
    from hotshelf.recommend._collaborative import CollaborativeModel
    from hotshelf.recommend._interactions import read_interactions

    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        started = time.perf_counter()
        with open_log(cfg, "events") as events, open_log(cfg, "events.batch") as batch:
            interactions = read_interactions(cfg, events, batch)
        model = CollaborativeModel.fit(interactions, cfg.recommend.cf)
        path = model.save(cfg.data_path)
        seconds = time.perf_counter() - started
        report = held_out_check(interactions, cfg.recommend.cf) if check else None
        err_console.print(_summary(interactions, model, seconds, report))
        if check and report is None:
            err_console.print("held-out check: no visitor has 3 items or more", highlight=False)
        print(path)


def _summary(
    interactions: Interactions,
    model: CollaborativeModel,
    seconds: float,
    report: HeldOutReport | None,
) -> Table:
    manifest, stats = model.manifest, interactions.stats
    table = Table(title="collaborative filtering", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("version", manifest.version),
        ("algorithm", f"{manifest.algorithm}, {manifest.settings.factors} factors, "
                      f"{manifest.settings.iterations} iterations"),
        ("visitors", f"{manifest.visitors:,}"),
        ("items", f"{manifest.items:,}"),
        ("interactions", f"{manifest.interactions:,} visitor-item pairs "
                         f"from {stats.feedback:,} feedback events"),
        ("bot events", f"{stats.bot_events:,} of {stats.records:,} left out"),
        ("trained to", ", ".join(f"{t} @ {o}" for t, o in sorted(manifest.offsets.items()))),
        ("seconds", f"{seconds:.1f} (fit {manifest.train_seconds:.1f})"),
    ]  # fmt: skip
    if report is not None:
        rows.append((
            f"recall@{report.k}",
            f"{report.recall:.3f} vs popularity {report.popularity_recall:.3f} "
            f"({report.visitors:,} visitors' last item held out; {report.seconds:.1f} s)",
        ))  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table
