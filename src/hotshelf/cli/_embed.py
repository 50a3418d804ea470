"""``hotshelf embed``: encode the catalog's items into the embedding store, in batches.

Only what changed since the last run is encoded (the job keeps a fingerprint of every
item's text), so running it again after a catalog update is cheap; a different model
(``--model-dir``) encodes everything again. ``hotshelf serve`` does the same in the
background as the catalog changes; this command is for the first, large run (the
service then starts with nothing left to do) and for scheduled jobs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hotshelf.cli._app import app
from hotshelf.cli._options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    cli_errors,
    config_from_options,
    err_console,
    progress_bar,
)


@app.command()
def embed(
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir", exists=True, file_okay=False,
            help="A fine-tuned model (hotshelf finetune); default embeddings.model_dir.",
        ),
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:  # fmt: skip
    """Encode new and changed catalog items into the embedding store and print a summary."""
    from hotshelf.catalog import CatalogView
    from hotshelf.embeddings import EmbeddingService
    from hotshelf.log import open_log

    with cli_errors():
        sets = list(overrides or [])
        if model_dir is not None:
            sets.append(f"embeddings.model_dir={json.dumps(str(model_dir))}")
        cfg = config_from_options(config, sets, data_dir)
        with open_log(cfg, "catalog") as log:
            service = EmbeddingService(cfg, CatalogView(log), log)
            try:
                service.start(follow=False)
                with progress_bar() as progress:
                    task = progress.add_task("embed", total=None)

                    def advance(done: int, total: int) -> None:
                        progress.update(task, completed=done, total=total)

                    report = service.refresh(advance)
            finally:
                service.close()
        model = service.job.version if service.job is not None else "?"
        err_console.print(
            f"encoded {report.encoded} item(s) ({report.items_per_s:,.0f}/s), "
            f"removed {report.removed}, unchanged {report.unchanged}; "
            f"{len(service.job or ())} item(s) embedded with {model}",
            highlight=False,
        )
