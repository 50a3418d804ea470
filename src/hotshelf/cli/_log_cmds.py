"""``hotshelf log``: inspect, verify and replay the durable log.

Each command reads a log that no process has open directly, and the log of a running
server as a follower (``LogFollower``: no lock, nothing written, only what the server
has made durable); ``replay --follow`` keeps following it, like ``tail -f``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import msgspec
import typer
from rich.console import Console
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
from hotshelf.config import Config
from hotshelf.events import decode_catalog_change, decode_stored_event
from hotshelf.log import EventLog, LogRecord, VerifyReport, open_log, open_reader

log_app = typer.Typer(
    name="log", help="Inspect, verify and replay the event log.", no_args_is_help=True
)
app.add_typer(log_app)

TOPICS = ("events", "events.batch", "catalog")
TopicOpt = Annotated[
    str, typer.Option("--topic", "-t", help="Log topic: events, events.batch or catalog.")
]
_json = msgspec.json.Encoder()


def _check_topic(topic: str) -> None:
    if topic not in TOPICS:
        raise typer.BadParameter(f"unknown topic {topic!r}; choose one of {', '.join(TOPICS)}")


def _decode(topic: str, record: LogRecord) -> dict[str, object]:
    """A record as a JSON-ready dict; undecodable payloads are shown, not hidden."""
    try:
        value = (
            decode_stored_event(record.value)
            if topic != "catalog"
            else decode_catalog_change(record.value)
        )
        body: object = msgspec.to_builtins(msgspec.structs.asdict(value))
    except msgspec.DecodeError as exc:
        body = {"undecodable": str(exc), "bytes": len(record.value)}
    return {"offset": record.offset, "log_ts_ms": record.timestamp_ms, "record": body}


# How long ``replay --follow`` waits between looks at a log with nothing new.
FOLLOW_POLL_S = 0.05


def _records(
    log: EventLog, start: int, stop: int | None, batch: int = 2000, *, follow: bool = False
) -> Iterator[LogRecord]:
    """Records from ``start`` to ``stop`` (or the end the log has now); with ``follow``,
    records as they arrive, until ``stop`` (or forever)."""
    offset = max(start, log.start_offset)
    if not follow:  # what arrives meanwhile is not asked for
        stop = log.end_offset if stop is None else min(stop, log.end_offset)
    while stop is None or offset < stop:
        end = log.end_offset if stop is None else min(stop, log.end_offset)
        if offset >= end:
            if not follow:
                return
            time.sleep(FOLLOW_POLL_S)
            continue
        chunk = log.read(offset, min(batch, end - offset))
        if not chunk:
            return
        yield from chunk
        offset = chunk[-1].offset + 1


def _open_for_reading(cfg: Config, topic: str, *, follow: bool = False) -> EventLog:
    """The log itself when nothing has it open (no ``follow``), else a follower, said so."""
    if follow:
        log, following = open_log(cfg, topic, follow=True), True
    else:
        log, following = open_reader(cfg, topic)
    if following:
        err_console.print(
            f"{topic}: following the log of the process that has it open (read-only)",
            highlight=False,
        )
    return log


@log_app.command()
def inspect(
    topic: TopicOpt = "events",
    start: Annotated[int, typer.Option("--from", help="First offset to show.")] = 0,
    limit: Annotated[int, typer.Option(min=0, help="How many records to show.")] = 10,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Show the log's extent and size, then a few decoded records."""
    _check_topic(topic)
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        with _open_for_reading(cfg, topic) as log:
            stats = log.stats()
            err_console.print(
                f"{topic}: offsets {stats.start_offset}..{stats.end_offset} "
                f"({stats.end_offset - stats.start_offset} records), "
                f"{stats.size_bytes:,} bytes in {stats.segments} segment(s)",
                highlight=False,
            )
            out = sys.stdout.buffer
            for record in _records(log, start, start + limit):
                out.write(_json.encode(_decode(topic, record)) + b"\n")
            out.flush()


def _report_table(topic: str, report: VerifyReport) -> Table:
    table = Table(title=f"log verify: {topic}")
    for col in ("records", "segments", "bytes", "offsets", "damage"):
        table.add_column(col)
    table.add_row(
        str(report.records),
        str(report.segments),
        f"{report.size_bytes:,}",
        f"{report.start_offset}..{report.end_offset}",
        "none" if report.ok else str(len(report.damage)),
    )
    return table


def _verify_topics(cfg: Config, topics: list[str], console: Console) -> bool:
    clean = True
    for topic in topics:
        with _open_for_reading(cfg, topic) as log:
            report = log.verify()
        console.print(_report_table(topic, report))
        for dmg in report.damage:
            clean = False
            last = "?" if dmg.last_offset is None else str(dmg.last_offset)
            console.print(
                f"[red]DAMAGE[/red] {dmg.path} @byte {dmg.position}: offsets "
                f"{dmg.first_offset}..{last}: {dmg.reason}",
                highlight=False,
            )
    return clean


@log_app.command()
def verify(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="One topic (default: all).")
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check every record's checksum and offset continuity; exit 1 on any damage."""
    topics = list(TOPICS) if topic is None else [topic]
    for name in topics:
        _check_topic(name)
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        if not _verify_topics(cfg, topics, err_console):
            raise typer.Exit(1)
        err_console.print("[green]log verifies clean[/green]")


@log_app.command()
def replay(
    topic: TopicOpt = "events",
    start: Annotated[int, typer.Option("--from", help="First offset.")] = 0,
    stop: Annotated[int | None, typer.Option("--to", help="Stop before this offset.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="NDJSON file (default stdout).")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep following a running server's log: records as they arrive, until "
            "--to or Ctrl-C.",
        ),
    ] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Replay records in offset order as NDJSON, for rebuilding state elsewhere."""
    _check_topic(topic)
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        with _open_for_reading(cfg, topic, follow=follow) as log:
            sink: BinaryIO = out.open("wb") if out else sys.stdout.buffer
            count = 0
            try:
                for record in _records(log, start, stop, follow=follow):
                    sink.write(_json.encode(_decode(topic, record)) + b"\n")
                    count += 1
                    if follow:
                        sink.flush()
            except KeyboardInterrupt:
                pass  # the end of a --follow
            finally:
                if out:
                    sink.close()
                else:
                    sink.flush()
        err_console.print(f"replayed {count} record(s) from {topic}", highlight=False)
