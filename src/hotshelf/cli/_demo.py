"""``hotshelf demo``: the whole loop on built-in data, no external server needed.

It starts ``hotshelf serve`` on an embedded log, loads a simulated store's catalog
and traffic through the HTTP API, shows a few real requests and answers (including
what a bad request and a retried request get, live trends and bot verdicts, search
and similar items from the product embeddings the server computes as the catalog
arrives, and recommendations for a new visitor, a returning buyer and a browsing
shopper once the server has trained its collaborative model on the log), verifies
the log, and then keeps serving until Ctrl-C (or ``--exit-after``).
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.panel import Panel

from hotshelf.cli._app import app
from hotshelf.cli._demo_recommend import Shoppers, recommend_examples
from hotshelf.cli._options import (
    ConfigOpt,
    SetOpt,
    cli_errors,
    config_from_options,
    progress_bar,
)
from hotshelf.cli._simulate import encode_event
from hotshelf.config import Config
from hotshelf.errors import ConfigError, UnavailableError
from hotshelf.log import open_log
from hotshelf.simulation import SimConfig, StoreSimulator

console = Console()
_MARKER = ".hotshelf-demo"
_BATCH = 500


class _Client:
    """A keep-alive HTTP/1.1 client for the demo's few hundred requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        headers = {"Content-Type": content_type} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def close(self) -> None:
        self.conn.close()


def _ready(port: int) -> bool:
    client = _Client(port)
    try:
        return client.call("GET", "/readyz")[0] == 200
    finally:
        client.close()


def _fresh_dir(path: Path) -> None:
    """Empty a directory the demo made before; refuse to touch anything else."""
    if path.exists() and any(path.iterdir()):
        if not (path / _MARKER).exists():
            raise ConfigError(f"{path} is not empty and was not made by the demo; pick --data-dir")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / _MARKER).write_text("made by hotshelf demo; deleted by the next demo run\n")


def _start_server(data_dir: Path, port: int, overrides: list[str]) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "hotshelf",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--set",
        'logging.level="warning"',
    ]
    for item in overrides:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UnavailableError(f"the server exited with code {proc.returncode}")
        try:
            if _ready(port):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise UnavailableError("the server did not become ready within 60 s")


def _load(
    client: _Client, sim: StoreSimulator, n_events: int, shoppers: Shoppers
) -> tuple[int, float]:
    items = sim.catalog()
    enc = msgspec.json.Encoder()
    with progress_bar(console) as progress:
        task = progress.add_task("catalog -> POST /v1/items", total=len(items))
        for i in range(0, len(items), _BATCH):
            status, body = client.call("POST", "/v1/items", enc.encode(items[i : i + _BATCH]))
            if status != 200:
                raise UnavailableError(f"POST /v1/items answered {status}: {body}")
            progress.advance(task, len(items[i : i + _BATCH]))
        task = progress.add_task("events -> POST /v1/events", total=n_events)
        start, sent, lines = time.perf_counter(), 0, []
        for sim_event in sim.events(n_events):
            shoppers.see(sim_event)
            lines.append(encode_event(sim_event.event))
            if len(lines) == _BATCH:
                sent += _post_events(client, lines)
                progress.advance(task, len(lines))
                lines = []
        if lines:
            sent += _post_events(client, lines)
            progress.advance(task, len(lines))
    return sent, time.perf_counter() - start


def _post_events(client: _Client, lines: list[bytes]) -> int:
    status, body = client.call("POST", "/v1/events", b"".join(lines), "application/x-ndjson")
    if status != 200:
        raise UnavailableError(f"POST /v1/events answered {status}: {body}")
    return int(body["accepted"])


def _show(title: str, request: str, status: int, body: Any) -> None:
    text = json.dumps(body, indent=2)[:1200] if not isinstance(body, str) else body[:1200]
    console.print(
        Panel(f"[bold cyan]{request}[/]\n[bold]{status}[/]\n{text}", title=title, expand=False)
    )


def _examples(client: _Client, sim: StoreSimulator) -> None:
    hot = (
        sim.ground_truth.hot_items[0].item_id
        if sim.ground_truth.hot_items
        else sim.catalog()[0].item_id
    )
    status, body = client.call("GET", f"/v1/items/{hot}")
    _show(
        "a catalog item (materialised from the catalog log)", f"GET /v1/items/{hot}", status, body
    )
    event = {
        "type": "add_to_cart",
        "event_id": "demo-retry-1",
        "cookie_id": "c-demo",
        "item_id": hot,
        "location": "London, GB",
        "device": "mobile",
        "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
    }
    for attempt in ("first try", "client retry, same event_id"):
        status, body = client.call("POST", "/v1/events", json.dumps(event).encode())
        _show(f"an event ({attempt})", "POST /v1/events " + json.dumps(event), status, body)
    bad = [{"type": "view", "cookie_id": "c1"}, {"type": "teleport", "timestamp": "yesterday"}]
    status, body = client.call("POST", "/v1/events", json.dumps(bad).encode())
    _show(
        "a bad request: every problem listed, nothing stored",
        "POST /v1/events " + json.dumps(bad),
        status,
        body,
    )
    status, body = client.call("GET", "/v1/items/no-such-item")
    _show("an unknown item", "GET /v1/items/no-such-item", status, body)


@app.command()
def demo(
    events: Annotated[int, typer.Option(min=1, max=5_000_000, help="Simulated events.")] = 100_000,
    items: Annotated[int, typer.Option(min=100, max=1_000_000, help="Catalog size.")] = 2000,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 0,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8080,
    data_dir: Annotated[Path, typer.Option(help="Demo data (emptied first).")] = Path(
        "hotshelf-data/demo"
    ),
    exit_after: Annotated[
        float | None, typer.Option(help="Stop this many seconds after the walkthrough.")
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Simulate a store, ingest its catalog and traffic over HTTP, show answers, serve."""
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        _fresh_dir(data_dir)
        now_ms = int(time.time() * 1000)
        duration_s = events / 500.0
        start_ms = now_ms - int(duration_s * 1000)
        sim = StoreSimulator(SimConfig(seed=seed, start_ms=start_ms, n_items=items))
        console.rule("[bold]hotshelf demo")
        # the server retrains its collaborative model from the log every few seconds, so
        # the model learns the traffic loaded below (a deployment retrains hourly or so)
        retrain = [] if cfg.recommend.cf.retrain_s else ["recommend.cf.retrain_s=5"]
        proc = _start_server(data_dir, port, [*retrain, *(overrides or [])])
        client = _Client(port)
        shoppers = Shoppers()
        try:
            sent, seconds = _load(client, sim, events, shoppers)
            console.print(
                f"ingested {sent:,} events durably in {seconds:.1f} s "
                f"({sent / seconds:,.0f} events/s over HTTP, one client)"
            )
            _examples(client, sim)
            titles = {item.item_id: item.title for item in sim.catalog()}
            _stream_examples(client, sim, titles)
            if cfg.embeddings.serve:
                _embedding_examples(client, sim, titles)
            if cfg.recommend.serve:
                recommend_examples(client.call, _show, shoppers, titles, console)
            _serve_until(proc, port, cfg.data_path, exit_after)
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=30)
        _verify(cfg)
        _rebuild_check(cfg)


def _stream_examples(client: _Client, sim: StoreSimulator, titles: dict[str, str]) -> None:
    """Trends, co-engagement and bot verdicts from the state the server keeps live."""
    hot = {h.item_id for h in sim.ground_truth.hot_items}
    deadline = time.monotonic() + 120
    while True:  # the processor catches up with the load in the background
        status, body = client.call("GET", "/v1/trending?k=5")
        lag = sum(body.get("lag", {}).values()) if status == 200 else None
        if lag == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    _show("trending now, all segments (bot filter on)", "GET /v1/trending?k=5", status, body)
    _titled(body, titles, hot)
    first = body["items"][0]["item_id"] if status == 200 and body.get("items") else None
    if first is not None:
        path = f"/v1/items/{first}/related?kind=viewed&k=5"
        _show("viewed in the same sessions", f"GET {path}", *client.call("GET", path))
    path = "/v1/popular?device=mobile&window=86400&k=5"
    _show("popular on mobile, last 24 h", f"GET {path}", *client.call("GET", path))
    _show(
        "bots kept out of the trends",
        "GET /v1/bots?limit=3",
        *client.call("GET", "/v1/bots?limit=3"),
    )


def _embedding_examples(client: _Client, sim: StoreSimulator, titles: dict[str, str]) -> None:
    """Search, similar items and ranking from the embeddings the server keeps current."""
    with progress_bar(console) as progress:
        task = progress.add_task("embedding the catalog (all-MiniLM-L6-v2, int8)", total=None)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:  # the server encodes the catalog as it arrives
            status, ready = client.call("GET", "/readyz")
            if ready["checks"].get("embeddings") == "ok" and ready.get("embeddings_lag") == 0:
                break
            time.sleep(0.5)
        progress.update(task, total=1, completed=1)
    query = {"query": "wireless earbuds for running", "k": 5}
    status, body = client.call("POST", "/v1/search", json.dumps(query).encode())
    _show("search: query text -> products", "POST /v1/search " + json.dumps(query), status, body)
    _titled(body, titles)
    item = sim.catalog()[0]
    path = f"/v1/items/{item.item_id}/similar?k=5"
    status, body = client.call("GET", path)
    _show(f"similar to {item.title!r} (text embeddings)", f"GET {path}", status, body)
    _titled(body, titles)
    candidates = [i.item_id for i in sim.catalog()[:8]]
    ask = {"query": "a gift for a coffee lover", "item_ids": candidates}
    status, body = client.call("POST", "/v1/rank", json.dumps(ask).encode())
    _show("rank candidates for a query", "POST /v1/rank " + json.dumps(ask), status, body)
    _titled(body, titles)


def _titled(body: Any, titles: dict[str, str], hot: Collection[str] = ()) -> None:
    """The answer's items with their titles, for reading (the API answers ids)."""
    if isinstance(body, dict):
        for rank, entry in enumerate(body.get("items", [])[:5], start=1):
            score = entry.get("score")
            shown = "-" if score is None else f"{score:.3f}"
            mark = "  <- simulated hot item" if entry["item_id"] in hot else ""
            console.print(f"  #{rank} {entry['item_id']}  {titles.get(entry['item_id'], '?')}"
                          f"  ({shown}){mark}", highlight=False)  # fmt: skip


def _rebuild_check(cfg: Config) -> None:
    """Replay the whole log into a fresh processor: its snapshot must equal the server's."""
    from hotshelf.stream import StreamProcessor, default_bot_filter_factory
    from hotshelf.stream._snapshot import SnapshotStore

    served = SnapshotStore(cfg.data_path / "stream", fsync=False)
    with (
        tempfile.TemporaryDirectory() as scratch,
        open_log(cfg, "events") as events,
        open_log(cfg, "events.batch") as batch,
        open_log(cfg, "catalog") as catalog_log,
    ):
        fresh = msgspec.structs.replace(cfg, data_dir=scratch)
        factory = default_bot_filter_factory(cfg)
        processor = StreamProcessor(fresh, events, catalog_log, factory, batch_log=batch)
        try:
            started = time.perf_counter()
            applied = processor.catch_up(timeout_s=300.0)
            seconds = time.perf_counter() - started
            same = processor.snapshot_bytes() == served.read()
        finally:
            processor.close(snapshot=False)
    console.rule("[bold]stream state rebuilt from offset 0")
    verdict = (
        "[green]byte-identical[/] to the snapshot the server wrote"
        if same
        else "[red]differs[/] from the server's snapshot (was it still catching up?)"
    )
    console.print(f"{applied:,} records replayed in {seconds:.1f} s: {verdict}")


def _serve_until(
    proc: subprocess.Popen[bytes], port: int, data: Path, exit_after: float | None
) -> None:
    console.rule(f"[bold green]serving on http://127.0.0.1:{port}")
    console.print(
        f"  curl -s http://127.0.0.1:{port}/readyz\n"
        f"  curl -s 'http://127.0.0.1:{port}/v1/trending?device=mobile&k=10'\n"
        f"  curl -s http://127.0.0.1:{port}/v1/bots\n"
        f"  curl -s -XPOST http://127.0.0.1:{port}/v1/search -H 'content-type: application/json'"
        f' -d \'{{"query": "running shoes", "k": 5}}\'\n'
        f"  curl -s http://127.0.0.1:{port}/metrics | grep hotshelf_events\n"
        f"  curl -s http://127.0.0.1:{port}/openapi.json\n"
        f"  hotshelf log inspect --data-dir {data} --limit 3\n"
        + ("Ctrl-C to stop." if exit_after is None else f"stopping in {exit_after:g} s.")
    )
    try:
        proc.wait(timeout=exit_after)
    except subprocess.TimeoutExpired:
        return
    except KeyboardInterrupt:
        console.print("stopping")


def _verify(cfg: Config) -> None:
    for topic in ("events", "events.batch", "catalog"):
        with open_log(cfg, topic) as log:
            report = log.verify()
        state = "[green]clean[/]" if report.ok else f"[red]{len(report.damage)} damaged range(s)[/]"
        console.print(
            f"log {topic}: {report.records:,} records, {report.size_bytes:,} bytes, {state}"
        )
