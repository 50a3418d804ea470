"""``hotshelf finetune``: contrastive fine-tuning of the text encoder on co-engagement.

Pairs come from the stream state (the processor's snapshot under ``data_dir``,
caught up with the log): for every catalog item, the items most often viewed, carted
or bought in the same sessions, at least ``--min-count`` times. A seeded tenth of the
pairs is held out, and recall@10 of the partner item among all catalog items is
measured on it before and after, so a run says whether it helped. The model goes to
``data_dir/models/<version>``; ``hotshelf embed --model-dir`` (or
``embeddings.model_dir``) puts it to use.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hotshelf.cli._app import app
from hotshelf.cli._options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    cli_errors,
    config_from_options,
    err_console,
)
from hotshelf.errors import ValidationError

if TYPE_CHECKING:
    from hotshelf.catalog import CatalogView
    from hotshelf.config import Config

_KINDS = ("bought", "carted", "viewed")  # the strongest signal first


def co_engaged_pairs(
    cfg: Config, catalog: CatalogView, per_item: int, min_count: float
) -> list[tuple[str, str]]:
    """(item, partner) id pairs from the stream state's co-engagement, each pair once."""
    from hotshelf.log import open_log
    from hotshelf.stream import StreamProcessor, default_bot_filter_factory

    with (
        open_log(cfg, "events") as events,
        open_log(cfg, "events.batch") as batch,
        open_log(cfg, "catalog") as catalog_log,
    ):
        # the service's settings, so its snapshot is the one restored
        factory = default_bot_filter_factory(cfg) if cfg.bots.enabled else None
        processor = StreamProcessor(cfg, events, catalog_log, factory, batch_log=batch)
        try:
            processor.catch_up(timeout_s=600.0)
            seen: set[frozenset[str]] = set()
            pairs: list[tuple[str, str]] = []
            with processor.reading() as view:
                for item in catalog.items():
                    for kind in _KINDS:
                        for partner in view.related(item.item_id, kind, per_item):
                            key = frozenset((item.item_id, partner.item_id))
                            if (partner.score >= min_count and partner.item_id in catalog
                                    and len(key) == 2 and key not in seen):  # fmt: skip
                                seen.add(key)
                                pairs.append((item.item_id, partner.item_id))
        finally:
            processor.close(snapshot=False)
    return pairs


def _held_out_search(
    texts: dict[str, str], held: list[tuple[str, str]]
) -> tuple[list[str], list[str], list[int]]:
    """Queries (one item of each held-out pair), the corpus (every catalog item) and,
    per query, the corpus row of its partner."""
    ids = sorted(texts)
    row = {item_id: n for n, item_id in enumerate(ids)}
    return [texts[a] for a, _ in held], [texts[i] for i in ids], [row[b] for _, b in held]


@app.command()
def finetune(
    epochs: Annotated[int, typer.Option(min=1, max=100, help="Passes over the pairs.")] = 3,
    per_item: Annotated[int, typer.Option(min=1, max=100, help="Partners per item.")] = 5,
    min_count: Annotated[
        float, typer.Option(min=1, help="Sessions a pair must share at least.")
    ] = 2,
    holdout: Annotated[float, typer.Option(min=0.01, max=0.5, help="Share held out.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Split and training seed.")] = 0,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Fine-tune the encoder on co-engaged item pairs; report held-out recall@10 before/after."""
    from hotshelf.catalog import CatalogView
    from hotshelf.embeddings import item_text
    from hotshelf.log import open_log
    from hotshelf.models import FineTuneConfig, fine_tune, load_text_encoder, pair_recall_at_k

    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        with open_log(cfg, "catalog") as log:
            catalog = CatalogView(log)
            catalog.catch_up()
        pairs = co_engaged_pairs(cfg, catalog, per_item, min_count)
        if len(pairs) < 10:
            raise ValidationError(
                f"only {len(pairs)} co-engaged pair(s) with --min-count {min_count:g}: "
                "too few to fine-tune on (ingest more traffic, or lower --min-count)"
            )
        random.Random(seed).shuffle(pairs)
        cut = max(1, int(len(pairs) * holdout))
        held, train = pairs[:cut], pairs[cut:]
        texts = {item.item_id: item_text(item, cfg.embeddings.description_chars)
                 for item in catalog.items()}  # fmt: skip
        queries, corpus, truth = _held_out_search(texts, held)
        err_console.print(f"{len(train)} training pair(s), {len(held)} held out; "
                          f"{len(corpus)} catalog items to search", highlight=False)  # fmt: skip
        before = pair_recall_at_k(load_text_encoder(), queries, corpus, truth)
        result = fine_tune([(texts[a], texts[b]) for a, b in train],
                           cfg.data_path / "models",
                           config=FineTuneConfig(epochs=epochs, seed=seed))  # fmt: skip
        after = pair_recall_at_k(load_text_encoder(result.model_dir), queries, corpus, truth)
        err_console.print(
            f"held-out recall@10: {before:.3f} before, {after:.3f} after "
            f"({result.total_seconds:.0f} s)\nmodel: {result.model_dir}\n"
            f"use it: hotshelf embed --model-dir {result.model_dir}",
            highlight=False,
        )
        print(Path(result.model_dir))
