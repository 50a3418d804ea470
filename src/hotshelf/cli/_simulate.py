"""``hotshelf simulate``: write or send a simulated store's traffic.

Events go to an NDJSON file (``--out``, ``-`` for stdout) and/or are POSTed in
batches to a running server (``--url``), over one keep-alive connection, to that
host only. Labels, ground truth and the catalog go to their own files.
"""

from __future__ import annotations

import http.client
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, BinaryIO
from urllib.parse import urlsplit

import msgspec
import typer

from hotshelf.cli._app import app
from hotshelf.cli._options import cli_errors, err_console, progress_bar
from hotshelf.errors import UnavailableError
from hotshelf.events import Event
from hotshelf.simulation import SimConfig, SimEvent, StoreSimulator

__all__ = ["encode_event", "simulate"]

_EVENT_FIELDS = Event.__struct_fields__
_json = msgspec.json.Encoder()
_RETRY_STATUS = frozenset({429, 502, 503, 504})


def encode_event(event: Event) -> bytes:
    """One NDJSON line, leaving out unset fields."""
    values = msgspec.structs.astuple(event)
    return (
        _json.encode({k: v for k, v in zip(_EVENT_FIELDS, values, strict=True) if v is not None})
        + b"\n"
    )


class _Poster:
    """POSTs NDJSON batches over one keep-alive connection; retries briefly, then fails."""

    def __init__(self, url: str, retries: int, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            message = f"{url!r} is not an http(s)://host[:port] URL"
            raise typer.BadParameter(message, param_hint="--url")
        self.url = url
        self.path = parts.path if parts.path not in ("", "/") else "/v1/events"
        https = parts.scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        self.conn = kind(parts.hostname, parts.port, timeout=timeout_s)
        self.sent = 0
        self.retries = retries

    def post(self, body: bytes, count: int) -> None:
        headers = {"Content-Type": "application/x-ndjson"}
        problem = ""
        for attempt in range(1 + self.retries):
            if attempt:
                time.sleep(min(5.0, 0.2 * 2**attempt))
            try:
                self.conn.request("POST", self.path, body=body, headers=headers)
                response = self.conn.getresponse()
                reply = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()  # reconnects on the next request
                problem = f"cannot reach {self.url}: {exc}"
                continue
            if 200 <= response.status < 300:
                self.sent += count
                return
            text = reply[:500].decode("utf-8", "replace")
            problem = f"{self.url} answered {response.status} to POST {self.path}: {text}"
            if response.status not in _RETRY_STATUS:
                break
        raise UnavailableError(f"{problem} (after sending {self.sent:,} events)")

    def close(self) -> None:
        self.conn.close()


class _Outputs:
    """Where events, labels and batches go; ``flush`` sends one batch everywhere."""

    def __init__(self, events: BinaryIO | None, labels: BinaryIO | None, poster: _Poster | None):
        self.events, self.labels, self.poster = events, labels, poster
        self.lines: list[bytes] = []
        self.label_lines: list[bytes] = []
        if labels is not None:
            labels.write(b"event_id,label\n")

    def add(self, sim_event: SimEvent) -> None:
        self.lines.append(encode_event(sim_event.event))
        if self.labels is not None:
            self.label_lines.append(f"{sim_event.event.event_id},{sim_event.label}\n".encode())

    def flush(self) -> None:
        if not self.lines:
            return
        body = b"".join(self.lines)
        if self.events is not None:
            self.events.write(body)
        if self.labels is not None:
            self.labels.write(b"".join(self.label_lines))
        if self.poster is not None:
            self.poster.post(body, len(self.lines))
        self.lines.clear()
        self.label_lines.clear()


def _paced(stream: Iterator[SimEvent], start_ms: int, outputs: _Outputs) -> Iterator[SimEvent]:
    """Hold each event until the wall clock reaches its timestamp (flushing first)."""
    wall0 = time.monotonic()
    for sim_event in stream:
        due = wall0 + (sim_event.ts_ms - start_ms) / 1000
        delay = due - time.monotonic()
        if delay > 0:
            outputs.flush()
            time.sleep(delay)
        yield sim_event


def _run(
    sim: StoreSimulator,
    n: int | None,
    duration: float | None,
    outputs: _Outputs,
    batch: int,
    realtime: bool,
) -> int:
    stream = sim.events(n, duration_s=duration)
    if realtime:
        stream = _paced(stream, sim.config.start_ms, outputs)
    start_ms, count = sim.config.start_ms, 0
    with progress_bar() as bar:
        total = n if n is not None else duration
        task = bar.add_task("events" if n is not None else "simulated s", total=total)
        for sim_event in stream:
            outputs.add(sim_event)
            count += 1
            if len(outputs.lines) >= batch:
                outputs.flush()
                done = count if n is not None else (sim_event.ts_ms - start_ms) / 1000
                bar.update(task, completed=done)
        outputs.flush()
        bar.update(task, completed=total)
    return count


def _open(path: Path | None, stack: ExitStack) -> BinaryIO | None:
    if path is None:
        return None
    if str(path) == "-":
        return sys.stdout.buffer
    return stack.enter_context(path.open("wb"))


def _config(
    seed: int,
    rate: float,
    items: int,
    visitors: int,
    bot_share: float,
    start_ms: int,
    id_prefix: str | None,
) -> SimConfig:
    try:
        return SimConfig(
            seed=seed,
            events_per_s=rate,
            n_items=items,
            n_visitors=visitors,
            bot_share=bot_share,
            start_ms=start_ms,
            id_prefix=id_prefix,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _default_start(n: int | None, duration: float | None, rate: float, realtime: bool) -> int:
    """Now for a real-time run; otherwise early enough that the run ends about now."""
    now_ms = time.time_ns() // 1_000_000
    if realtime:
        return now_ms
    span_s = duration if duration is not None else (n or 0) / rate
    return now_ms - int(span_s * 1000)


def _check_usage(n: int | None, duration: float | None, sinks: bool, labels: Path | None) -> None:
    if (n is not None or duration is not None) and not sinks:
        raise typer.BadParameter("pass --out FILE and/or --url URL to say where events go")
    if labels is not None and n is None and duration is None:
        raise typer.BadParameter("--labels needs --events or --duration", param_hint="--labels")


EventsOpt = Annotated[int | None, typer.Option("--events", "-n", min=1, help="How many events.")]
DurationOpt = Annotated[float | None, typer.Option(min=0.001, help="Simulated seconds.")]
StartOpt = Annotated[
    int | None,
    typer.Option(
        help="First event time, epoch ms (default: ends now; with --realtime, starts now)."
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="NDJSON events ('-' = stdout).")]
FileOpt = Annotated[Path | None, typer.Option()]
UrlOpt = Annotated[str | None, typer.Option(help="POST events to this server (http://host:port).")]


@app.command()
def simulate(
    events: EventsOpt = None,
    duration: DurationOpt = None,
    seed: Annotated[int, typer.Option(help="One seed, one exact run.")] = 0,
    rate: Annotated[float, typer.Option(min=0.001, help="Events per simulated second.")] = 500.0,
    items: Annotated[int, typer.Option(min=100, help="Catalog size.")] = 2000,
    visitors: Annotated[int, typer.Option(min=1, help="Distinct visitors.")] = 20_000,
    bot_share: Annotated[float, typer.Option(min=0.0, max=0.99, help="Bot event share.")] = 0.05,
    start_ms: StartOpt = None,
    id_prefix: Annotated[str | None, typer.Option(help="Event id prefix (sim<seed>).")] = None,
    out: OutOpt = None,
    labels: Annotated[Path | None, typer.Option(help="CSV file of event_id,label.")] = None,
    truth: Annotated[Path | None, typer.Option(help="Ground truth JSON file.")] = None,
    catalog_out: Annotated[Path | None, typer.Option(help="Catalog JSON lines file.")] = None,
    url: UrlOpt = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per POST.")] = 500,
    retries: Annotated[int, typer.Option(min=0, max=10, help="Retries of a failed POST.")] = 4,
    realtime: Annotated[bool, typer.Option(help="Pace events to their timestamps.")] = False,
) -> None:
    """Generate a deterministic store's traffic, with bots, hot items and ground truth."""
    _check_usage(events, duration, out is not None or url is not None, labels)
    poster = _Poster(url, retries) if url is not None else None
    start = start_ms if start_ms is not None else _default_start(events, duration, rate, realtime)
    sim = StoreSimulator(_config(seed, rate, items, visitors, bot_share, start, id_prefix))
    with cli_errors(), ExitStack() as stack:
        try:
            _write_side_files(sim, catalog_out, truth)
            if events is None and duration is None:
                return
            outputs = _Outputs(_open(out, stack), _open(labels, stack), poster)
            count = _run(sim, events, duration, outputs, batch, realtime)
        except OSError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
        finally:
            if poster is not None:
                poster.close()
        err_console.print(f"{count:,} events simulated (seed {seed})", highlight=False)


def _write_side_files(sim: StoreSimulator, catalog_out: Path | None, truth: Path | None) -> None:
    if catalog_out is not None:
        with catalog_out.open("wb") as sink:
            for item in sim.catalog():
                sink.write(_json.encode(item) + b"\n")
        err_console.print(f"{len(sim.catalog()):,} items written to {catalog_out}", highlight=False)
    if truth is not None:
        truth.write_bytes(msgspec.json.format(_json.encode(sim.ground_truth)) + b"\n")
