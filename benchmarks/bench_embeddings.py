"""Product embeddings side by side with their baselines and peers.

    python -m benchmarks.bench_embeddings [--only fetch,encode,images,job,ann,http,quality]
        [--items 20000] [--similar-rate 200] [--search-rate 40] [--duration 10]
        [--index auto] [--epochs 2] [--out FILE]

``fetch`` (``benchmarks._embedding_fetch``): 50-item fetch p50/p99 from the local tier,
from Redis through ``TwoTierStore`` (remote path) and at a full local hit, next to a
plain redis-py ``MGET`` of the same keys, on a private redis-server.

``encode`` (``benchmarks._embedding_encode``): catalog encoding items/s of the shipped
int8 ONNX model, the fp32 ONNX export that fine-tuning writes and the dynamic-int8
variant we do not use, against sentence-transformers eager torch: ratios, cosine
agreement, and batched-vs-alone agreement (the same text must give the same vector).

``images`` (``benchmarks._embedding_images``): product-photo embeddings
(EfficientNet-Lite0): photos/s batched against one per call, and how much of each
pairwise photo cosine the stored rotation to ``image_dim`` values changes.

``job``: the first ``--items`` products of the real Instacart catalog
(``../shared/data/instacart``; title = product name, category = department > aisle)
go into a catalog log, and ``EmbeddingJob`` (what ``hotshelf embed`` runs) encodes
them into the memory-mapped store: items/s end to end; then one title changes and the
job runs again (only that item is encoded).

``ann`` (``benchmarks._embedding_ann``): the job's vectors, read back from the store;
exact search against usearch (shipped), faiss and hnswlib HNSW: recall@10, build time,
single-query latency.

``http``: ``hotshelf serve`` over that data directory (embeddings on, stream off) in
its own process; an open-loop load generator in another process sends
``GET /v1/items/{id}/similar?k=10`` at ``--similar-rate`` and ``POST /v1/search``
(real Wayfair queries, ``../shared/data/wands_queries``) at ``--search-rate`` per
second for ``--duration`` seconds each. Latency counts from each request's due time.

``quality`` (``benchmarks._embedding_quality``): same-aisle share of the 10 nearest
neighbours on Instacart; Amazon-Google recall@10 of the true match before and after
fine-tuning (``--epochs``) on the train split's matches.

JSON on stdout (and in ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks import _instacart
from benchmarks._cli import add_only_option, run_and_report, run_header
from benchmarks._loadgen import OpenLoopSpec
from benchmarks._servers import hotshelf_serve_command, open_loop_in_process, running_server
from hotshelf.testing import free_port

SECTIONS = ("fetch", "encode", "images", "job", "ann", "http", "quality")


def instacart_items(limit: int) -> list[Any]:
    """The first ``limit`` Instacart products as catalog items."""
    from hotshelf.events import Item

    return [
        Item(item_id=f"p{p.product_id}", title=p.name, category=[p.department, p.aisle])
        for p in _instacart.products()[:limit]
    ]


def _config(data_dir: Path, index: str) -> Any:
    from hotshelf.config import load_config

    sets = [f"data_dir={json.dumps(str(data_dir))}", "log.fsync=false",
            f'embeddings.index="{index}"']  # fmt: skip
    return load_config(overrides=sets, environ={})


def job_section(data_dir: Path, items: int, index: str) -> tuple[dict[str, Any], Any]:
    """Load the catalog, run the embedding job twice; the report and the item vectors."""
    import msgspec

    from hotshelf.catalog import CatalogView
    from hotshelf.embeddings import EmbeddingService
    from hotshelf.log import open_log
    from hotshelf.monitoring import configure_logging

    catalog_items = instacart_items(items)
    cfg = _config(data_dir, index)
    configure_logging(cfg.logging)  # logs to stderr: stdout is the JSON
    with open_log(cfg, "catalog") as log:
        view = CatalogView(log)
        view.upsert(catalog_items)
        service = EmbeddingService(cfg, view, log)
        service.start(follow=False)
        try:
            first = service.refresh()
            edited = msgspec.structs.replace(catalog_items[0], title="Cordless Drill 18V")
            view.upsert([edited])
            second = service.refresh()
            assert service.store is not None
            keys = [item.item_id for item in catalog_items]
            vectors, found = service.store.load_many(keys)
        finally:
            service.close()
    report = {
        "items": len(catalog_items),
        "first_run": msgspec.to_builtins(first),
        "after_one_title_change": msgspec.to_builtins(second),
    }
    return report, vectors[found]


def http_section(data_dir: Path, items: int, args: argparse.Namespace) -> dict[str, Any]:
    ids = [item.item_id for item in instacart_items(items)]
    with (_instacart.DATA / "wands_queries" / "query.csv").open(newline="") as f:
        queries = [row["query"] for row in csv.DictReader(f, delimiter="\t")]
    similar = [("GET", f"/v1/items/{urllib.parse.quote(i, safe='')}/similar?k=10", b"")
               for i in ids[:: max(1, len(ids) // 2000)]]  # fmt: skip
    search = [("POST", "/v1/search", json.dumps({"query": q, "k": 10}).encode())
              for q in queries]  # fmt: skip
    port = free_port()
    sets = ["embeddings.serve=true", f'embeddings.index="{args.index}"', "log.fsync=false"]
    cmd = hotshelf_serve_command(port, str(data_dir), sets, stream=False)
    with running_server(cmd, port, timeout_s=600) as server:
        warm = OpenLoopSpec(port, similar[:50] + search[:50], rate=50, duration_s=2)
        open_loop_in_process(warm)
        cpu = server.cpu_s()
        out = {
            "similar": open_loop_in_process(
                OpenLoopSpec(port, similar, args.similar_rate, args.duration)
            ),
            "search": open_loop_in_process(
                OpenLoopSpec(port, search, args.search_rate, args.duration)
            ),
        }
        out["server_cpu_s"] = round(server.cpu_s() - cpu, 2)
        out["ready_after_s"] = round(server.ready_after_s, 2)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = run_header(args)
    if "fetch" in args.only:
        from benchmarks import _embedding_fetch

        out["fetch"] = _embedding_fetch.run(redis_url=None, items=10_000, requests=5_000)
    if "encode" in args.only:
        from benchmarks import _embedding_encode

        out["encode"] = _embedding_encode.run()
    if "images" in args.only:
        from benchmarks import _embedding_images

        out["images"] = _embedding_images.run()
    with tempfile.TemporaryDirectory(prefix="hotshelf-bench-emb-") as tmp:
        data_dir = Path(tmp)
        if {"job", "ann", "http"} & set(args.only):
            out["job"], vectors = job_section(data_dir, args.items, args.index)
            if "ann" in args.only:
                from benchmarks import _embedding_ann

                out["ann"] = _embedding_ann.run(vectors)
            if "http" in args.only:
                out["http"] = http_section(data_dir, args.items, args)
    if "quality" in args.only:
        from benchmarks import _embedding_quality

        out["quality"] = _embedding_quality.run(epochs=args.epochs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_only_option(parser, SECTIONS)
    parser.add_argument("--items", type=int, default=20_000, help="catalog size (Instacart)")
    parser.add_argument("--similar-rate", type=float, default=200.0, help="requests/s")
    parser.add_argument("--search-rate", type=float, default=40.0, help="requests/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load")
    parser.add_argument("--index", choices=("auto", "exact", "hnsw"), default="auto")
    parser.add_argument("--epochs", type=int, default=2, help="quality: fine-tuning epochs")
    parser.add_argument("--out", type=Path)
    run_and_report(run, parser.parse_args())


if __name__ == "__main__":
    main()
